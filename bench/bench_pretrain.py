"""Pre-training throughput: tokens/s of the distillation step, and the teacher's share of its time.

    python bench/bench_pretrain.py --threads 1 --batch 16 --length 128 --repeats 5

Three timings, interleaved in rotating order inside every repeat after a warm-up (medians reported):
  mlm       the student's plain MLM step: forward, loss at the masked positions, backward, AdamW step;
  kd        the distillation step (`DistillModule.losses` + backward + AdamW), teacher forward included;
  teacher   the teacher's forward alone (no grad, eval), as inside the kd step.
The teacher's share is teacher / kd; (kd − mlm) / kd is printed beside it as a cross-check (the kd step also
computes the KL or the projected MSE, so it is slightly larger). Tokens are the real tokens of the batch.

Default models: the student is MiniLM's half-size sub-architecture ⟨3, 6, 192, 768⟩ extracted from the real
MiniLM weights; the teachers are MiniLM itself, as a hidden-state teacher (it has no MLM head), and MiniLM with
an MLM head (random head weights: timing does not depend on them) for logit distillation. `--teacher DIR`
times a checkpoint of your own instead. Batches are packed, masked blocks of real text from ../shared/data.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bortlab.models.arch import Arch
from bortlab.models.extract import extract
from bortlab.models.mlm import MaskedLM, load_mlm
from bortlab.pretrain.distill import DistillModule

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def real_batch(tokenizer, batch: int, length: int) -> dict:
    """One masked batch of packed real text (random ids when the task data is not there)."""
    from bortlab.pretrain.corpus import MaskingCollator, pack

    collate = MaskingCollator(tokenizer)
    if (DATA / "superglue").exists():
        import numpy as np

        from bortlab.pretrain.make_corpus import documents
        docs = []
        for d in documents(DATA):
            docs.append(d)
            if len(docs) >= 4 * batch * length // 10:
                break
        rows = tokenizer(docs, add_special_tokens=False)["input_ids"]
        ids = np.concatenate([np.asarray(r + [tokenizer.sep_token_id]) for r in rows])
        offsets = np.concatenate([[0], np.cumsum([len(r) + 1 for r in rows])])
        blocks = pack(ids, offsets, np.arange(len(rows)), length, tokenizer.cls_token_id, tokenizer.sep_token_id)
        if len(blocks) >= batch:
            return collate(blocks[:batch], generator=torch.Generator().manual_seed(0))
    return collate(torch.randint(1000, 29000, (batch, length)), generator=torch.Generator().manual_seed(0))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(student: MaskedLM, teacher: MaskedLM, batch: dict, repeats: int, warmup: int = 2) -> dict:
    kd = DistillModule(student, teacher)
    mlm = DistillModule(student, None)
    opt = torch.optim.AdamW(kd.parameters(), lr=1e-5)

    def step(module):
        def run():
            loss = module.losses(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    def teacher_forward():
        with torch.no_grad():
            h = teacher(batch["input_ids"], attention_mask=batch["attention_mask"])
            if teacher.head is not None:
                teacher.logits(h[batch["labels"].ne(-100)])

    student.train()
    fns = {"mlm": step(mlm), "kd": step(kd), "teacher": teacher_forward}
    times = {k: [] for k in fns}
    order = list(fns)
    for r in range(warmup + repeats):
        for k in order:
            dt = timed(fns[k])
            if r >= warmup:
                times[k].append(dt)
        order = order[1:] + order[:1]
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--student", default="3,6,192,768", help="D,A,H,I extracted from the source (MiniLM)")
    ap.add_argument("--teacher", default=None, help="a checkpoint dir instead of the MiniLM teachers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import AutoTokenizer

    from bortlab.config import minilm_path
    source = args.teacher or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    base = load_mlm(source).eval()
    student = extract(MaskedLM(base.encoder) if base.head is None else base, Arch(*map(int, args.student.split(","))))
    label = "minilm" if args.teacher is None else Path(source).name
    teachers = {f"{label} ({'logits' if base.head is not None else 'hidden states'})": base}
    if args.teacher is None:
        teachers["minilm + MLM head (logits)"] = MaskedLM(base.encoder)
    batch = real_batch(tokenizer, args.batch, args.length)
    tokens = int(batch["attention_mask"].sum())
    print(f"student {student.arch} ({student.encoder.num_params() / 1e6:.1f}M), batch {args.batch} x {args.length} "
          f"({tokens} real tokens, {int(batch['labels'].ne(-100).sum())} masked), {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print(f"{'teacher':<34} {'mlm tok/s':>10} {'kd tok/s':>10} {'kd/mlm':>7} {'teacher share':>14} {'(kd-mlm)/kd':>12}")
    for name, teacher in teachers.items():
        t = bench(student, teacher.eval(), batch, args.repeats)
        print(f"{name:<34} {tokens / t['mlm']:>10.0f} {tokens / t['kd']:>10.0f} {t['kd'] / t['mlm']:>7.2f} "
              f"{t['teacher'] / t['kd']:>13.1%} {(t['kd'] - t['mlm']) / t['kd']:>12.1%}")


if __name__ == "__main__":
    main()
