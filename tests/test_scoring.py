"""One scoring path for every task in the table: `scoring.score(task, logits, rows)` reads the predictions out
as `Task.readout` says and computes `Task.metrics` through `metrics.task_scores`. Perfect logits on a few
real dev rows (format-exact hand-made rows where the release is not shipped here) score 1.0 on every metric
where the metric defines 1.0 for them."""
from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.metrics import matthews_corrcoef

from bortlab.data import metrics, scoring
from bortlab.data.io import DataError
from bortlab.data.tasks import READOUTS, all_tasks, read_split

N = 40        # rows per task: spread over the split, so both classes of a binary task occur

# rows as the readers make them, for the tasks whose release is not in the shared data
_NLI3 = ("entailment", "neutral", "contradiction")
_HAND = {
    "glue/mnli": [{"idx": i, "sentence1": f"A man eats {i}.", "sentence2": "Someone eats.", "label": _NLI3[i % 3]}
                  for i in range(9)],
    "glue/qqp": [{"idx": i, "question1": f"How do I cook {i}?", "question2": "How to cook?", "label": "01"[i % 2]}
                 for i in range(8)],
    # AX ships without labels; give its rows MNLI's labels to score them
    "glue/ax": [{"idx": i, "sentence1": f"The cat sat {i}.", "sentence2": "A cat sat.", "label": _NLI3[i % 3]}
                for i in range(9)],
    "superglue/record": [
        {"passage_idx": 0, "query_idx": q, "passage": "Macron met Merkel in Paris.", "query": f"@placeholder {q}",
         "entity": e, "answers": gold, "label": int(e in gold)}
        for q, gold in ((0, ["Macron"]), (1, ["Paris", "Paris, France"]), (2, ["Merkel"]))
        for e in ("Macron", "Merkel", "Paris")],
}
_RACE = [{"id": f"middle{i // 2}.txt", "level": "middle", "question_idx": i % 2, "article": "The man walked.",
          "question": "Where did he go?", "options": ["home", "sea", "town", "park"], "label": "ABCD"[i % 4]}
         for i in range(8)]


def _rows(task, request) -> list[dict]:
    if task.benchmark == "race":
        return _RACE
    if task.name in _HAND:
        return _HAND[task.name]
    root = request.getfixturevalue("data_root")      # the real release copies; skips when they are absent
    split = (task.dev_splits or task.test_splits)[0]
    try:
        rows = read_split(task, split, root=root)
    except DataError:
        pytest.skip(f"{task.name} {split} not in the shared data at {root}")
    if task.group is not None:       # keep whole groups (questions, pairs): the first ones in file order
        keys = list(dict.fromkeys(task.group(r) for r in rows))[: N // 4]
        return [r for r in rows if task.group(r) in set(keys)]
    return rows[:: max(1, len(rows) // N)][:N]


def _perfect_logits(task, rows) -> torch.Tensor:
    gold = [task.target(r) for r in rows]
    if task.readout == "value":
        return torch.tensor(gold, dtype=torch.float32).unsqueeze(1)
    if task.readout == "group_best":                  # class 1 above class 0 exactly for gold candidates
        return torch.tensor([[0.0, 1.0 if g else -1.0] for g in gold])
    width = task.num_choices or len(task.labels)
    return torch.nn.functional.one_hot(torch.tensor(gold), width).float() * 5


def _expected(task, name: str, rows) -> float:
    """What a perfect prediction scores where 1.0 is not defined (scikit-learn / SuperGLUE conventions)."""
    gold = [task.target(r) for r in rows]
    impl = metrics.canonical(task.metric_impls[task.metrics.index(name)])
    if impl == "mcc" and len(set(gold)) < 2:
        return 0.0
    if impl == "f1" and 1 not in gold:
        return 0.0
    if impl == "gender_parity":                       # pairs whose two gold labels agree
        pairs: dict = {}
        for r, g in zip(rows, gold):
            pairs.setdefault(task.group(r), []).append(g)
        return sum(a == b for a, b in pairs.values()) / len(pairs)
    return 1.0


@pytest.mark.parametrize("name", sorted(all_tasks()))
def test_perfect_logits_score_one_through_the_single_path(name, monkeypatch, request):
    monkeypatch.setattr("bortlab.hub.hub_reachable", lambda *a, **k: False)   # no download for missing files
    task = all_tasks()[name]
    rows = _rows(task, request)
    assert rows and all(task.target(r) is not None for r in rows), f"{name}: rows need gold labels"
    calls = []
    real = metrics.task_scores
    monkeypatch.setattr(metrics, "task_scores", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # a constant correlation would warn: rows must vary
        got = scoring.score(task, _perfect_logits(task, rows), rows)
    assert calls == [name]
    assert list(got) == list(task.metrics)
    for metric in task.metrics:
        assert got[metric] == pytest.approx(_expected(task, metric, rows), abs=1e-6), (name, metric, got)


def test_the_table_says_how_each_task_is_scored_and_submitted():
    tasks = all_tasks()
    assert {t.readout for t in tasks.values()} <= set(READOUTS)
    assert [n for n, t in tasks.items() if t.readout == "value"] == ["glue/stsb"]
    assert [n for n, t in tasks.items() if t.readout == "group_best"] == ["superglue/record"]
    for t in tasks.values():
        for impl in t.metric_impls:
            metrics.canonical(impl)                   # every metric a task names is registered
        assert all(t.submission_file(s) for s in t.test_splits), t.name
    assert tasks["glue/mnli"].submission_file("test_mismatched") == "MNLI-mm.tsv"
    assert tasks["superglue/wsc"].submission_spelling == ("False", "True")


def test_predictions_follow_the_readout():
    tasks = all_tasks()
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    assert scoring.predictions(tasks["glue/rte"], logits).tolist() == [1, 0]
    assert scoring.predictions(tasks["glue/rte"], [1, 0]).tolist() == [1, 0]          # indices pass through
    assert scoring.predictions(tasks["glue/stsb"], torch.tensor([[2.5], [4.0]])).tolist() == [2.5, 4.0]
    assert scoring.predictions(tasks["superglue/record"], logits).tolist() == [2.0, -2.0]


def test_score_refuses_a_length_mismatch_and_skips_unlabelled_rows():
    task = all_tasks()["glue/rte"]
    rows = [{"idx": 0, "label": "entailment"}, {"idx": 1, "label": "not_entailment"}]
    with pytest.raises(ValueError, match="1 predictions for 2 rows"):
        scoring.score(task, torch.zeros(1, 2), rows)
    assert scoring.score(task, torch.zeros(2, 2), [{"idx": 0, "label": None}] * 2) == {}
    assert scoring.score(task, torch.zeros(2, 2), None) == {}


def test_constant_mcc_is_sklearn_on_every_path():
    # all rows one class, predicted perfectly: MCC is 0/0, which scikit-learn reports as 0.0
    from bortlab.data import qa_metrics as qm

    gold = [1, 1, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = matthews_corrcoef(gold, gold)
    assert ref == 0.0
    tasks = all_tasks()
    assert metrics.compute_metrics(["mcc"], gold, gold)["mcc"] == ref
    assert qm.mcc(gold, gold) == ref
    axb, cola = tasks["superglue/axb"], tasks["glue/cola"]
    rows = [{"idx": i, "label": "not_entailment"} for i in range(4)]
    assert qm.superglue_metrics(axb, rows, gold)["mcc"] == ref
    assert scoring.score(axb, torch.tensor([[0.0, 1.0]] * 4), rows)["mcc"] == ref
    assert scoring.score(cola, torch.tensor([[0.0, 1.0]] * 4), [{"idx": i, "label": "1"} for i in range(4)])["mcc"] == ref
