"""How much of MultiRC a run sees: dev F1a / EM / accuracy / AUC of a fine-tuned run, split by whether the
passage fit whole in the run's max length (the passage is shortened, never the question or answer).

    python bench/multirc_truncation.py <run dir or .ckpt> [--data ../shared/data] [--limit N]

Prints (and, without --limit, writes next to the checkpoint as multirc_truncation.json) the scores on all dev answers, on the
answers whose passage was cut, and on those seen whole, with each subset's all-true F1a and label rates.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from sklearn.metrics import roc_auc_score

from bortlab.agora.labellers import load_bortlab
from bortlab.data import read_split
from bortlab.data.qa_metrics import multirc_scores
from bortlab.data.tasks import get_task
from bortlab.errors import USER_ERRORS, die
from bortlab.finetune.checkpoint import run_checkpoint


def subset_scores(idx, groups, pred, gold, p_true) -> dict:
    if not idx:
        return {"answers": 0}
    g, p, t = [groups[i] for i in idx], [pred[i] for i in idx], [gold[i] for i in idx]
    return {"answers": len(idx), **multirc_scores(g, p, t),
            # ranking quality whatever the decision rule: 0.5 = no signal (all-true F1a is the threshold-0 point)
            "auc": roc_auc_score(t, [p_true[i] for i in idx]) if 0 < sum(t) < len(t) else None,
            "accuracy": sum(a == b for a, b in zip(p, t)) / len(idx),
            "all_true_f1a": multirc_scores(g, [1] * len(idx), t)["f1a"],
            "true_rate": sum(t) / len(idx), "pred_true_rate": sum(p) / len(idx)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a MultiRC run directory (its best.ckpt) or a checkpoint file")
    ap.add_argument("--data", default=os.environ.get("BORTLAB_DATA", "../shared/data"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N dev answers (a quick look)")
    args = ap.parse_args()

    task = get_task("superglue/multirc")
    try:
        ckpt = run_checkpoint(args.run, what="run")
        labeller = load_bortlab(ckpt, task, what="run")
    except USER_ERRORS as e:
        die(str(e))
    max_length = labeller.max_length
    rows = read_split(task.name, "dev", root=args.data)[: args.limit]
    probs = labeller.probs(rows)
    pred = [int(task.labels[j]) for j in probs.argmax(-1).tolist()]
    p_true = probs[:, task.labels.index("1")].tolist()
    gold = [int(r["label"]) for r in rows]
    groups = [(r["passage_idx"], r["question_idx"]) for r in rows]
    # untruncated length of the pair (task.inputs: one (passage, question + answer) pair per row): "cut" = the
    # passage did not fit whole (data.passage_fit=cut: its end was cut; select: some sentences were left out)
    cut = [len(labeller.tokenizer(*task.inputs(r)[0])["input_ids"]) > max_length for r in rows]

    def scores(idx):
        return subset_scores(idx, groups, pred, gold, p_true)

    result = {"checkpoint": str(ckpt), "max_length": max_length, "passage_fit": labeller.passage_fit,
              "all": scores(list(range(len(rows)))),
              "cut": scores([i for i, c in enumerate(cut) if c]),
              "whole": scores([i for i, c in enumerate(cut) if not c])}
    if args.limit is None:
        (ckpt.parent / "multirc_truncation.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
