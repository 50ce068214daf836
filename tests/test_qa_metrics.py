"""SuperGLUE/RACE metrics against scikit-learn and against cases worked out by hand."""
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bortlab.data import qa_metrics as qm
from bortlab.data.tasks import get_task


# ---- ReCoRD string metrics (SQuAD normalisation) ---------------------------------------------------
@pytest.mark.parametrize("text, normal", [
    ("The  Cat's hat!", "cats hat"),
    ("An apple a day", "apple day"),
    ("  U.S.A. ", "usa"),
    ("theatre", "theatre"),            # articles are removed as words only
])
def test_normalize_answer(text, normal):
    assert qm.normalize_answer(text) == normal


def test_token_f1_by_hand():
    # "big red dog" vs "red dog barked": 2 common tokens, P = R = 2/3
    assert qm.token_f1("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    assert qm.token_f1("Obama", "Barack Obama") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert qm.token_f1("nothing", "in common") == 0.0
    assert qm.token_f1("", "") == 0.0   # the official script gives 0 when nothing overlaps


def test_record_scores_by_hand():
    preds = ["Barack Obama", "the White House", "Paris"]
    golds = [["Obama", "Barack Obama"], ["White House press office"], ["London"]]
    # q1: EM 1, F1 1 (max over golds); q2: EM 0, F1 = 2*(1*0.5)/1.5 = 2/3; q3: 0, 0
    out = qm.record_scores(preds, golds)
    assert out["em"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_record_metrics_pick_the_top_entity_per_query():
    task = get_task("superglue/record")
    rows = [
        {"passage_idx": 0, "query_idx": 7, "entity": "Obama", "answers": ["Barack Obama"]},
        {"passage_idx": 0, "query_idx": 7, "entity": "Biden", "answers": ["Barack Obama"]},
        {"passage_idx": 0, "query_idx": 8, "entity": "Paris", "answers": ["Paris"]},
        {"passage_idx": 0, "query_idx": 8, "entity": "France", "answers": ["Paris"]},
    ]
    # query 7 picks "Obama" (F1 2/3, EM 0); query 8 picks "France" from 2-class logits (margin 1 > 0.5)
    logits = torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.0, 0.5], [1.0, 2.0]])
    out = qm.superglue_metrics(task, rows, logits)
    assert out == {"f1": pytest.approx((2 / 3 + 0) / 2), "em": 0.0}
    # one score per row works the same way: now query 8 picks "Paris"
    out = qm.superglue_metrics(task, rows, [3.0, 1.0, 0.9, 0.1])
    assert out == {"f1": pytest.approx((2 / 3 + 1) / 2), "em": pytest.approx(0.5)}


# ---- MultiRC ---------------------------------------------------------------------------------------
def test_multirc_by_hand():
    groups = [(0, 0)] * 3 + [(0, 1)] * 2 + [(1, 2)]
    targets = [1, 0, 1, 0, 1, 1]
    preds = [1, 0, 1, 1, 1, 0]
    # question (0,0) all right; (0,1) one wrong; (1,2) wrong -> EM 1/3.
    # TP 3, FP 1, FN 1 -> P = R = 3/4 -> F1a 0.75
    out = qm.multirc_scores(groups, preds, targets)
    assert out["em"] == pytest.approx(1 / 3)
    assert out["f1a"] == pytest.approx(0.75)
    assert out["f1a"] == pytest.approx(f1_score(targets, preds))


def test_multirc_f1a_matches_sklearn_on_random_labels():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    groups = (np.arange(500) // 5).tolist()
    assert qm.multirc_scores(groups, p, t)["f1a"] == pytest.approx(f1_score(t, p))


def test_multirc_metrics_through_the_entry_point():
    task = get_task("superglue/multirc")
    rows = [{"passage_idx": 0, "question_idx": q, "answer_idx": a, "label": lab}
            for q, a, lab in [(0, 0, 1), (0, 1, 0), (1, 2, 1)]]
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])   # -> preds 1, 0, 0
    out = qm.superglue_metrics(task, rows, logits)
    assert list(out) == ["f1a", "em"]
    assert out["em"] == pytest.approx(0.5)
    assert out["f1a"] == pytest.approx(f1_score([1, 0, 1], [1, 0, 0]))


# ---- classification metrics vs scikit-learn -----------------------------------------------------------
def test_accuracy_macro_f1_mcc_match_sklearn():
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert qm.accuracy(p, t) == pytest.approx(accuracy_score(t, p))
    assert qm.macro_f1(p, t, num_classes=3) == pytest.approx(f1_score(t, p, average="macro"))
    tb, pb = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    assert qm.mcc(pb, tb) == pytest.approx(matthews_corrcoef(tb, pb), abs=1e-6)


DEGENERATE = [
    ([1, 1, 1, 1], [1, 1, 1, 1]),      # perfect but constant: MCC is 0/0 (scikit-learn: 0.0)
    ([0, 0, 0, 0], [0, 0, 0, 0]),
    ([1, 1, 1, 1], [0, 1, 0, 1]),      # constant predictions
    ([0, 1, 0, 1], [1, 1, 1, 1]),      # constant targets
    ([0, 1, 1, 0], [1, 0, 0, 1]),      # all wrong: -1
    ([1], [0]),
]


@pytest.mark.parametrize("p,t", DEGENERATE)
def test_degenerate_mcc_accuracy_macro_f1_match_sklearn(p, t):
    """The SuperGLUE entry points on the 0/0 cases, against scikit-learn (not against bortlab.data.metrics,
    which would only show that two bortlab layers agree)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # sklearn warns on 0/0
        ref_mcc, ref_f1 = matthews_corrcoef(t, p), f1_score(t, p, average="macro", zero_division=0)
    assert qm.mcc(p, t) == pytest.approx(ref_mcc, abs=1e-6)
    assert qm.accuracy(p, t) == pytest.approx(accuracy_score(t, p))
    assert qm.macro_f1(p, t, num_classes=2) == pytest.approx(ref_f1, abs=1e-6)
    axb = get_task("superglue/axb")            # and through the entry point AX-b is scored with
    rows = [{"idx": i, "label": axb.labels[y]} for i, y in enumerate(t)]
    assert qm.superglue_metrics(axb, rows, p)["mcc"] == pytest.approx(ref_mcc, abs=1e-6)


def test_cb_metrics_from_logits():
    task = get_task("superglue/cb")
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(56, 3))
    labels = ["entailment", "contradiction", "neutral"]
    gold = rng.integers(0, 3, 56)
    rows = [{"idx": i, "label": labels[g]} for i, g in enumerate(gold)]
    pred = logits.argmax(1)
    out = qm.superglue_metrics(task, rows, torch.tensor(logits))
    assert list(out) == ["accuracy", "macro_f1"]
    assert out["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))


def test_axb_mcc_and_multiple_choice_accuracy():
    axb = get_task("superglue/axb")
    rows = [{"idx": i, "label": lab} for i, lab in enumerate(["entailment", "not_entailment"] * 5)]
    preds = [0, 1, 0, 0, 1, 1, 0, 1, 1, 1]
    gold = [0, 1] * 5
    assert qm.superglue_metrics(axb, rows, preds)["mcc"] == pytest.approx(matthews_corrcoef(gold, preds), abs=1e-6)
    copa = get_task("superglue/copa")
    rows = [{"idx": i, "label": lab} for i, lab in enumerate([0, 1, 1, 0])]
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 1.0], [0.0, 0.5]])   # choices 0, 1, 0, 1
    assert qm.superglue_metrics(copa, rows, logits) == {"accuracy": 0.5}


# ---- AX-g gender parity -------------------------------------------------------------------------------
def test_gender_parity_by_hand():
    # pairs 0 and 2 agree, pair 1 does not -> 2/3
    assert qm.gender_parity([0, 0, 1, 1, 2, 2], [1, 1, 0, 1, 0, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="exactly two"):
        qm.gender_parity([0, 0, 1], [1, 1, 0])


def test_axg_metrics_through_the_entry_point():
    task = get_task("superglue/axg")
    labels = ["entailment", "entailment", "not_entailment", "not_entailment"]
    rows = [{"idx": i, "pair": i // 2, "label": lab} for i, lab in enumerate(labels)]
    out = qm.superglue_metrics(task, rows, [0, 1, 1, 1])
    assert out == {"accuracy": 0.75, "gender_parity": 0.5}


def test_metrics_refuse_unlabelled_rows_and_length_mismatch():
    task = get_task("superglue/rte")
    with pytest.raises(ValueError, match="no gold label"):
        qm.superglue_metrics(task, [{"idx": 0, "label": None}], [0])
    with pytest.raises(ValueError, match="1 predictions for 2 rows"):
        qm.superglue_metrics(task, [{"idx": 0, "label": "entailment"}] * 2, [0])
