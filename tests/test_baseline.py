"""bortlab.data.baseline: the best constant predictor's score on real dev files, checked against scikit-learn,
the rescaled error, and a tiny run with objective=rescaled."""
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bortlab.data.baseline import BaselineError, baseline_score, check_has_baseline, rescaled_error
from bortlab.data.tasks import get_task

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "data.batch_size=8",
        "data.eval_batch_size=32", "trainer.enable_progress_bar=false", "task.max_length=64"]


def _dev(name, root):
    task = get_task(name)
    return task, task.reader(task, "dev", str(root / task.benchmark))


def _sk_best_constant(metric, gold, k):
    return max(metric(gold, np.full(len(gold), c)) for c in range(k))


def test_mrpc_baseline_is_always_paraphrase_f1(data_root):
    task, rows = _dev("glue/mrpc", data_root)
    gold = np.array([task.target(r) for r in rows])
    expected = f1_score(gold, np.ones_like(gold))
    assert expected == pytest.approx(0.8122, abs=1e-4)        # the 0.81: "always paraphrase"
    assert baseline_score(task, rows) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(_sk_best_constant(lambda g, p: f1_score(g, p, zero_division=0), gold, 2))


def test_rte_baseline_is_majority_accuracy(data_root):
    task, rows = _dev("glue/rte", data_root)
    gold = np.array([task.target(r) for r in rows])
    expected = _sk_best_constant(accuracy_score, gold, 2)
    assert expected == pytest.approx(146 / 277)               # 0.527
    assert baseline_score(task, rows) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name,expected", [("glue/sst2", 0.5092), ("glue/qnli", 0.5054), ("glue/wnli", 0.5634)])
def test_accuracy_baseline_is_majority_class(name, expected, data_root):
    task, rows = _dev(name, data_root)
    gold = np.array([task.target(r) for r in rows])
    sk = _sk_best_constant(accuracy_score, gold, len(task.labels))
    assert sk == pytest.approx(expected, abs=1e-4) and baseline_score(task, rows) == pytest.approx(sk, abs=1e-6)


def test_cola_constant_mcc_is_zero(data_root):
    task, rows = _dev("glue/cola", data_root)
    gold = np.array([task.target(r) for r in rows])
    assert _sk_best_constant(matthews_corrcoef, gold, 2) == 0.0
    assert baseline_score(task, rows) == 0.0


def test_stsb_constant_has_no_correlation(data_root):
    task, rows = _dev("glue/stsb", data_root)
    assert task.readout == "value" and baseline_score(task, rows) == 0.0


def test_copa_baseline_is_the_best_choice_position(superglue_root):
    task, rows = _dev("superglue/copa", superglue_root)
    gold = np.array([task.target(r) for r in rows])
    expected = _sk_best_constant(accuracy_score, gold, task.num_choices)
    assert baseline_score(task, rows) == pytest.approx(expected, abs=1e-6)


def test_record_has_no_constant_baseline():
    with pytest.raises(BaselineError, match="group_best"):
        check_has_baseline(get_task("superglue/record"))


def test_rescaled_error():
    assert rescaled_error(146 / 277, 146 / 277) == pytest.approx(1.0)
    assert rescaled_error(1.0, 0.5) == 0.0 and rescaled_error(0.4, 0.5) == pytest.approx(1.2)
    assert rescaled_error(-0.2, 0.0) == pytest.approx(1.2)            # MCC below chance
    with pytest.raises(BaselineError):
        rescaled_error(1.0, 1.0)


def test_tiny_run_with_rescaled_objective(tmp_path, compose, data_root):
    from bortlab.run import run

    cfg = compose(["arch=tiny", "task=glue/rte", f"data.root={data_root / 'glue'}", f"+output_dir={tmp_path}",
                   "predict=false", "objective=rescaled", *FAST])
    objective = run(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["objective_kind"] == "rescaled" and m["baseline_score"] == pytest.approx(146 / 277, abs=1e-6)
    assert m["objective"] == pytest.approx(objective)
    assert objective == pytest.approx((1 - m["dev"]["val/accuracy"]) / (1 - m["baseline_score"]))
