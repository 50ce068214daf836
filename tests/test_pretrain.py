"""Pre-training: the loss against a hand-written formula, masking statistics, the corpus (formats, cache,
held-out split, errors), the distillation module, and `run_pretrain` end to end on real English text."""
import json
from pathlib import Path

import pytest
import torch

from bortlab.config import SetupError
from bortlab.data.io import DataError
from bortlab.pretrain.corpus import CorpusDataModule, MaskingCollator, pack, read_documents, split_documents, tokenize_corpus
from bortlab.pretrain.distill import DistillModule, distill_loss



def _mlm_teacher(path: Path, tokenizer, hidden=32, seed=0):
    """A small BertForMaskedLM with the MiniLM WordPiece vocabulary, saved as transformers does."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64)
    BertForMaskedLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---- the loss -----------------------------------------------------------------------------------------
def test_distill_loss_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 11, generator=g) * 3, torch.randn(7, 11, generator=g) * 3
    gold = torch.randint(0, 11, (7,), generator=g)
    T, alpha, beta = 2.0, 0.1, 0.5
    # by hand: per position, CE = -log softmax(s)[gold]; KL = Σ_v p_t (log p_t − log p_s) at temperature T
    p_s = torch.exp(s) / torch.exp(s).sum(-1, keepdim=True)
    ce = -torch.log(p_s[torch.arange(7), gold]).mean()
    pt = torch.exp(t / T) / torch.exp(t / T).sum(-1, keepdim=True)
    ps = torch.exp(s / T) / torch.exp(s / T).sum(-1, keepdim=True)
    kl = (pt * (torch.log(pt) - torch.log(ps))).sum(-1).mean()
    out = distill_loss(s, t, gold, alpha, beta, T)
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], alpha * ce + beta * T * T * kl)
    assert distill_loss(s, s, gold)["kl"].abs() < 1e-6
    torch.testing.assert_close(distill_loss(s, None, gold)["loss"], ce)


# ---- masking ------------------------------------------------------------------------------------------
def test_masking_is_15_percent_80_10_10_and_never_special(tokenizer):
    collate = MaskingCollator(tokenizer)
    torch.manual_seed(0)
    body = torch.randint(1000, 30000, (400, 126))
    blocks = torch.cat([torch.full((400, 1), tokenizer.cls_token_id), body, torch.full((400, 1), tokenizer.sep_token_id)], 1)
    blocks[0, 100:] = -1                                       # one short, padded block
    b = collate(list(blocks), generator=torch.Generator().manual_seed(1))
    chosen = b["labels"].ne(-100)
    assert torch.equal(chosen.sum(1)[1:], torch.full((399,), round(0.15 * 126)))    # exactly 15% per sequence
    assert chosen[0].sum() == round(0.15 * 98) and not chosen[0, 99:].any() and b["attention_mask"][0, 100:].eq(0).all()
    assert not chosen[:, 0].any() and not chosen[1:, -1].any()                    # [CLS], [SEP] never masked
    assert torch.equal(b["labels"][chosen], blocks[chosen])
    n = chosen.sum().item()
    masked = (b["input_ids"][chosen] == tokenizer.mask_token_id).sum().item() / n
    kept = (b["input_ids"][chosen] == blocks[chosen]).sum().item() / n
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(1 - masked - kept - 0.1) < 0.015
    assert torch.equal(b["input_ids"][~chosen & b["attention_mask"].bool()], blocks[~chosen & blocks.ge(0)])
    assert b["input_ids"][0, 100:].eq(tokenizer.pad_token_id).all()


# ---- corpus -------------------------------------------------------------------------------------------
def test_documents_lines_paragraphs_and_pack(tmp_path):
    (tmp_path / "lines.txt").write_text("one doc\n\nnope\n", encoding="utf-8")
    (tmp_path / "para.txt").write_text("a b\nc\n\n\nd e\n", encoding="utf-8")
    assert list(read_documents(tmp_path / "para.txt")) == ["a b c", "d e"]
    assert list(read_documents(tmp_path / "para.txt", "lines")) == ["a b", "c", "d e"]
    assert list(read_documents(tmp_path / "lines.txt", "lines")) == ["one doc", "nope"]
    ids = torch.arange(100, 123).numpy()
    offsets = torch.tensor([0, 10, 23]).numpy()
    assert pack(ids, offsets, torch.tensor([0, 1]).numpy(), max_length=8, cls=1, sep=2).shape == (3, 8)  # tail < 8
    blocks = pack(ids, offsets, torch.tensor([0, 1]).numpy(), max_length=8, cls=1, sep=2, min_tokens=1)
    assert blocks.shape == (4, 8) and blocks[:, 0].eq(1).all()
    assert blocks[0].tolist() == [1, 100, 101, 102, 103, 104, 105, 2]
    assert blocks[3].tolist() == [1, 118, 119, 120, 121, 122, 2, -1]            # the short tail block, padded
    train, held = split_documents(torch.zeros(101).long().numpy(), 0.1, seed=0)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 100


def test_corpus_cache_split_and_errors(tmp_path, tokenizer):
    docs = [f"document number {i} talks about the {w} and nothing else ." for i, w in enumerate(["sea", "sky"] * 30)]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("\n".join(docs[:30]) + "\n")
    (tmp_path / "c" / "b.txt").write_text("\n".join(docs[30:]) + "\n")
    calls = []

    class Counting:   # the real tokenizer, counting how often text is tokenised
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, *a, **k):
            calls.append(1)
            return tokenizer(*a, **k)

    for spec in (tmp_path / "c", str(tmp_path / "c" / "*.txt"), [tmp_path / "c" / "a.txt", tmp_path / "c" / "b.txt"]):
        ids, offsets = tokenize_corpus(Counting(), corpus=spec, cache_dir=tmp_path / "cache")
        assert len(offsets) == 61 and ids[offsets[1] - 1] == tokenizer.sep_token_id
    assert len(calls) == 1                                     # the three specs name the same files: one tokenisation
    dm = CorpusDataModule(tokenizer, corpus=tmp_path / "c", cache_dir=tmp_path / "cache", max_length=32, heldout=0.1)
    dm.setup()
    assert dm.stats["heldout_documents"] == 6 and dm.stats["train_documents"] == 54
    v1 = next(iter(dm.val_dataloader()))
    dm2 = CorpusDataModule(tokenizer, corpus=tmp_path / "c", cache_dir=tmp_path / "cache", max_length=32, heldout=0.1)
    dm2.setup()
    assert torch.equal(v1["input_ids"], next(iter(dm2.val_dataloader()))["input_ids"])   # fixed held-out masking

    (tmp_path / "empty.txt").write_text("\n  \n\n")
    with pytest.raises(DataError, match="holds no text"):
        tokenize_corpus(tokenizer, corpus=tmp_path / "empty.txt", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="no text files"):
        tokenize_corpus(tokenizer, corpus=tmp_path / "nothing*.txt", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="data.corpus"):
        tokenize_corpus(tokenizer, cache_dir=tmp_path / "cache")


# ---- the module -----------------------------------------------------------------------------------------
def test_hidden_state_teacher_is_frozen_and_stays_in_eval(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    from bortlab.models.arch import Arch
    from bortlab.models.encoder import Encoder
    from bortlab.models.mlm import MaskedLM, load_mlm

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "bare")
    teacher = load_mlm(tmp_path / "bare")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = MaskedLM(Encoder(Arch(1, 2, 32, 64, pooler=False)))
    module = DistillModule(student, teacher, lr=1e-3)
    assert module.hidden_weight == 1.0 and module.proj.weight.shape == (48, 32) and not module.logits_kd
    assert all(not k.startswith("teacher") for k in module.state_dict())      # never saved in checkpoints
    module.train()
    assert not teacher.training
    batch = MaskingCollator(tokenizer)(list(torch.randint(1000, 20000, (4, 16))))
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        out = module.losses(batch)
        first = first or out["mse"].item()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["mse"].item() < first
    torch.testing.assert_close(out["loss"], 0.1 * out["ce"] + out["mse"])
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="hidden_weight"):
        DistillModule(student, teacher, hidden_weight=0.0)


# ---- end to end -------------------------------------------------------------------------------------------
def test_config_teacher_key_takes_paths_hub_ids_and_minilm(compose):
    cfg = compose(["task=pretrain/kd", "arch=bort", "teacher=FacebookAI/roberta-large"])
    assert cfg.teacher == "FacebookAI/roberta-large" and cfg.model.init == "scratch"
    assert cfg.task.alpha == 0.1 and cfg.task.beta == 0.5 and cfg.task.temperature == 2.0
    assert cfg.task.optim.lr == 1e-4 and cfg.task.optim.warmup_ratio == 0.01 and cfg.trainer.gradient_clip_val == 1.0
    from bortlab.pretrain.run import resolve_teacher

    assert resolve_teacher(compose(["task=pretrain/kd", "teacher=minilm"])).endswith("model")
    with pytest.raises(SetupError, match="needs a teacher"):
        resolve_teacher(compose(["task=pretrain/kd"]))
    with pytest.raises(SetupError, match="without a teacher"):
        resolve_teacher(compose(["task=pretrain/mlm", "teacher=x"]))


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory, superglue_root):
    """1,500 real English documents (SST-2 sentences, QNLI, WiC, BoolQ and MultiRC passages...)."""
    if not (superglue_root / "superglue" / "BoolQ" / "val.jsonl").exists():
        pytest.skip(f"no BoolQ under {superglue_root}")
    from bortlab.pretrain.make_corpus import documents

    docs = list(documents(superglue_root, exclude={"sst2", "cola"}))
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(docs[:1000] + docs[-500:]) + "\n")
    return path


FAST = ["trainer.enable_progress_bar=false", "data.batch_size=8", "data.eval_batch_size=32", "task.max_length=64",
        "data.heldout_max_blocks=16", "logger=csv"]


def test_kd_run_on_real_text_loss_falls_and_every_stage_loads_the_export(tmp_path, tokenizer, real_corpus, compose):
    from bortlab.models.extract import extract_from_checkpoint
    from bortlab.models.hf import load_pretrained
    from bortlab.pretrain.run import run_pretrain

    teacher = _mlm_teacher(tmp_path / "teacher", tokenizer)
    over = ["task=pretrain/kd", "arch=tiny", "arch.depth=1", "arch.hidden=64", "arch.intermediate=128", f"teacher={teacher}",
            f"data.corpus={real_corpus}", f"data.cache_dir={tmp_path / 'cache'}", "task.optim.lr=2e-3",
            "task.eval_every=10", *FAST]
    run = tmp_path / "run"
    loss = run_pretrain(compose([*over, "trainer.max_steps=20", f"+output_dir={run}"]))
    m = json.loads((run / "metrics.json").read_text())
    assert m["objective"] == pytest.approx(loss) and m["steps"] == 20 and m["teacher_mode"] == "logits"
    assert [s for s, _ in m["curve"]] == [0, 10, 20] and loss < m["initial_heldout"]["val/loss"]
    assert m["tokens"] == 20 * 8 * 64 and m["corpus"]["heldout_documents"] >= 1
    assert (run / "loss_curve.png").stat().st_size > 10_000 and (run / "checkpoints" / "last.ckpt").exists()
    # the export is a teacher, a fine-tuning checkpoint and an extraction source, by path
    assert load_pretrained(run / "export").arch.tuple == (1, 2, 64, 128)
    assert extract_from_checkpoint(str(run), (1, 1, 32, 64)).arch.tuple == (1, 1, 32, 64)
    # resume=auto continues from last.ckpt: 10 more steps, the curve goes on
    run_pretrain(compose([*over, "trainer.max_steps=30", f"+output_dir={run}", "resume=auto"]))
    m2 = json.loads((run / "metrics.json").read_text())
    assert m2["steps"] == 30 and [s for s, _ in m2["curve"]] == [0, 10, 20, 30] and m2["tokens"] == 30 * 8 * 64
    # the first run's CSV log survives the resume (Lightning's CSV writer would delete it)
    first_log = (run / "csv" / "metrics.1.csv").read_text()
    assert "val/loss" in first_log.splitlines()[0] and (run / "csv" / "metrics.csv").exists()
    # the student as a teacher for the next student (same vocabulary)
    nxt = run_pretrain(compose([*over, "trainer.max_steps=2", f"teacher={run}", f"+output_dir={tmp_path / 'next'}"]))
    assert nxt > 0


def test_bad_teacher_vocabulary_and_empty_corpus_are_clear_errors(tmp_path, tokenizer, real_corpus, compose):
    from transformers import BertConfig, BertForMaskedLM

    from bortlab.models.hf import VocabMismatchError
    from bortlab.pretrain.run import run_pretrain

    BertForMaskedLM(BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(tmp_path / "t")
    tokenizer.save_pretrained(tmp_path / "t")                   # 30522 WordPiece tokens vs 1000 embedding rows
    base = ["task=pretrain/kd", "arch=tiny", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=1", *FAST]
    with pytest.raises(VocabMismatchError, match="vocabulary mismatch"):
        run_pretrain(compose([*base, f"teacher={tmp_path / 't'}", f"data.corpus={real_corpus}",
                                  f"+output_dir={tmp_path / 'r1'}"]))
    good = _mlm_teacher(tmp_path / "good", tokenizer)
    with pytest.raises(VocabMismatchError, match="Teacher/student vocabulary mismatch"):
        run_pretrain(compose([*base, f"teacher={good}", "model.init=pretrained", f"model.pretrained={tmp_path / 't'}",
                                  "model.tokenizer=" + str(good), "arch.depth=1", "arch.hidden=32", "arch.heads=2",
                                  "arch.intermediate=64", f"data.corpus={real_corpus}", f"+output_dir={tmp_path / 'r2'}"]))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no text"):
        run_pretrain(compose([*base, f"teacher={good}", f"data.corpus={tmp_path / 'empty.txt'}",
                                  f"+output_dir={tmp_path / 'r3'}"]))


def test_datasets_corpus_through_load_dataset(tmp_path, tokenizer):
    """`data.dataset` goes through datasets.load_dataset; a local folder of JSON lines exercises that path offline."""
    pytest.importorskip("datasets")
    (tmp_path / "ds").mkdir()
    rows = [{"text": f"the {w} is blue today and it was grey yesterday ."} for w in ["sea", "sky", "car"] * 10]
    rows[3]["text"] = "   "                                    # blank rows are skipped
    (tmp_path / "ds" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ids, offsets = tokenize_corpus(tokenizer, dataset=str(tmp_path / "ds"), cache_dir=tmp_path / "cache")
    assert len(offsets) == 30 and ids[: offsets[1]].tolist() == tokenizer("the sea is blue today and it was grey "
                                                                          "yesterday .", add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    with pytest.raises(DataError, match="no column 'body'"):
        tokenize_corpus(tokenizer, dataset=str(tmp_path / "ds"), text_column="body", cache_dir=tmp_path / "cache")


def test_pretraining_takes_its_callbacks_from_the_config(tmp_path, real_corpus, compose):
    # the callbacks group serves every stage: no checkpoints with callbacks=none; early stopping on val/loss
    from bortlab.pretrain.run import run_pretrain

    base = ["task=pretrain/mlm", "arch=tiny", "arch.depth=1", "arch.hidden=32", "arch.heads=2", "arch.intermediate=64",
            f"data.corpus={real_corpus}", f"data.cache_dir={tmp_path / 'cache'}", "task.eval_every=2",
            "trainer.max_steps=6", *FAST]
    run_pretrain(compose([*base, "callbacks=none", f"+output_dir={tmp_path / 'none'}"]))
    m = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert m["steps"] == 6 and m["best_checkpoint"] is None and not (tmp_path / "none" / "checkpoints").exists()
    # lr 0 for 6 steps: the held-out loss never improves, so patience 1 stops after the second check
    run_pretrain(compose([*base, "task.optim.lr=0.0", "callbacks.early_stopping.enabled=true",
                          "callbacks.early_stopping.patience=1", f"+output_dir={tmp_path / 'es'}"]))
    m = json.loads((tmp_path / "es" / "metrics.json").read_text())
    assert m["steps"] < 6 and m["best_checkpoint"].endswith("best.ckpt")


def test_bf16_mixed_pretraining_on_cpu(tmp_path, real_corpus, compose):
    from bortlab.pretrain.run import run_pretrain

    loss = run_pretrain(compose(["task=pretrain/mlm", "arch=tiny", "arch.depth=1", "arch.hidden=32", "arch.heads=2",
                                 "arch.intermediate=64", f"data.corpus={real_corpus}", f"data.cache_dir={tmp_path / 'c'}",
                                 "task.eval_every=10", "trainer.max_steps=20", "task.optim.lr=3e-3",
                                 "trainer.precision=bf16-mixed", *FAST, f"+output_dir={tmp_path / 'r'}"]))
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["steps"] == 20 and loss < m["initial_heldout"]["val/loss"]
