"""Agora's Θ loop: the pruning rule, the loop's bookkeeping, and the `hydra/sweeper=agora` plugin."""
import json
import math
from pathlib import Path

import pytest

from bortlab.agora.theta import Job, prune, rank, theta_loop


def test_prune_halves_and_always_drops_one():
    assert prune(list("abcdefgh")) == list("abcd")
    assert prune(list("abc")) == ["a"]              # drop ceil(1.5) = 2
    assert prune(["a"]) == [] and prune([]) == []
    assert prune(list("abcd"), keep=0.75) == list("abc")
    assert prune(list("abcd"), keep=0.0) == []
    with pytest.raises(ValueError):
        prune(list("ab"), keep=1.0)


def test_rank_puts_failures_last_and_keeps_order_on_ties():
    jobs = [Job(["a"], 1, 0.5), Job(["b"], 1, float("-inf"), status="failed"), Job(["c"], 1, 0.7), Job(["d"], 1, 0.5)]
    assert [j.theta for j in rank(jobs)] == [["c"], ["a"], ["d"], ["b"]]


def test_theta_loop_feeds_the_best_points_forward_and_terminates():
    # a θ's score grows with the pool it was trained on; θ "lr=3" is the best at every round
    calls = []

    def train_batch(thetas, pool, r):
        calls.append((r, [t[0] for t in thetas], list(pool)))
        return [Job(t, r, score=int(t[0][-1]) / 10 + len(pool) / 100, points=f"r{r}-{t[0]}.jsonl") for t in thetas]

    thetas = [[f"lr={i}"] for i in (1, 2, 3, 0, 4)]
    res = theta_loop(thetas, train_batch)
    # 5 -> 2 -> 1 -> 0 sets: ceil(log2 5) + 1 rounds at most
    assert [len(c[1]) for c in calls] == [5, 2, 1]
    assert calls[0][2] == [] and calls[1][2] == ["r1-lr=4.jsonl"] and calls[2][2] == ["r1-lr=4.jsonl", "r2-lr=4.jsonl"]
    assert res.best.theta == ["lr=4"] and res.best.round == 3 and math.isclose(res.best.score, 0.42)
    assert res.rounds[0]["pruned"] == [["lr=2"], ["lr=1"], ["lr=0"]]
    assert res.pool == ["r1-lr=4.jsonl", "r2-lr=4.jsonl", "r3-lr=4.jsonl"]
    assert len(theta_loop(thetas, train_batch, max_rounds=1).rounds) == 1


def test_failed_jobs_are_pruned_and_never_feed_points():
    def train_batch(thetas, pool, r):
        return [Job(t, r, float("-inf"), status="failed") if t == ["x"] else Job(t, r, 0.6, points="p.jsonl")
                for t in thetas]

    res = theta_loop([["x"], ["y"]], train_batch)
    assert res.rounds[0]["kept"] == [["y"]] and res.best.theta == ["y"]


def test_the_sweeper_is_discovered_and_its_config_registered():
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    assert "AgoraSweeper" in [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "agora.yaml" in ConfigStore.instance().list("hydra/sweeper")


FAST = ["arch=tiny", "task=glue/rte", "task.max_length=32", "data.batch_size=16", "trainer.enable_progress_bar=false",
        "predict=false", "trainer.limit_val_batches=1", "logger=none", "callbacks.checkpoint.enabled=false"]


# 16-34 s alone on the shared 2-core box (by load): two train.py runs, a 3-job sweep and its resume (in CI:
# the sweeper's only end-to-end test)
def test_sweeper_end_to_end_on_rte(tmp_path, train, data_root):
    train(*FAST, "callbacks.checkpoint.enabled=true", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'lab'}")
    sweep = tmp_path / "sweep"
    cmd = ("-m", "hydra/sweeper=agora", *FAST, "callbacks=agora", "callbacks.checkpoint.enabled=false",
           f"agora.labeller.path={tmp_path / 'lab'}", "agora.rounds=0", "agora.k=1", "agora.max_mistakes=4",
           "agora.holdout_fraction=0.02", "trainer.max_steps=2", "optim.lr=1e-4,1e-3,1e-2", f"hydra.sweep.dir={sweep}")
    train(*cmd)
    import yaml

    res = yaml.safe_load((sweep / "agora_theta.yaml").read_text())
    assert [len(r["ranking"]) for r in res["rounds"]] == [3, 1]      # 3 sets -> 1 -> 0
    assert res["rounds"][1]["ranking"][0]["theta"] == res["rounds"][0]["kept"][0]
    # round 2's job trained on the points of round 1's best job
    fed = res["rounds"][0]["fed_points"]
    assert fed and Path(fed).exists()
    job2 = Path(res["rounds"][1]["ranking"][0]["dir"])
    assert fed in (job2 / ".hydra" / "overrides.yaml").read_text()
    summary = json.loads((job2 / "agora" / "summary.json").read_text())
    assert summary["honest"] and summary["agora_dev_split"] == "agora_holdout"
    assert res["best"]["reported"] is not None

    # a rerun resumes: every job is finished, so nothing is launched and the answer is the same
    jobs = sorted(p.name for p in sweep.iterdir() if p.name.isdigit())
    assert len(jobs) == 4
    p = train(*cmd)
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == jobs
    assert "4 finished jobs there" in p.stdout + p.stderr
    assert yaml.safe_load((sweep / "agora_theta.yaml").read_text()) == res


def test_sweeper_without_callbacks_agora_says_so(tmp_path, train):
    p = train("-m", "hydra/sweeper=agora", "arch=tiny", "optim.lr=1e-4,1e-3", f"hydra.sweep.dir={tmp_path / 's'}",
              expect=2, timeout=300)
    out = p.stdout + p.stderr
    assert "add callbacks=agora" in out and "Traceback" not in out


def test_a_job_is_ranked_on_agoras_dev_or_on_its_own_tune_split(tmp_path):
    """rank_on=agora_dev reads agora/summary.json; rank_on=run reads metrics.json, and a run that scored a tune
    split reports no official figure."""
    from hydra_plugins.bortlab_agora_sweeper.agora_sweeper import _read_job

    job = tmp_path / "0"
    (job / "agora").mkdir(parents=True)
    (job / "agora" / "summary.json").write_text(json.dumps({"agora_dev_score": 0.91, "final_points": "p.jsonl"}))
    (job / "metrics.json").write_text(json.dumps({"selection_metric": "val/accuracy", "dev_split": "tune",
                                                  "dev": {"val/accuracy": 0.76, "val/loss": 0.5}}))
    agora = _read_job(job, ["optim.lr=1e-4"], "agora_dev")
    run = _read_job(job, ["optim.lr=1e-4"], "run")
    assert (agora["score"], run["score"]) == (0.91, 0.76)
    assert agora["reported"] is None and run["points"] == "p.jsonl"          # a tune split is not the official dev
    (job / "metrics.json").write_text(json.dumps({"selection_metric": "val/accuracy", "dev_split": "dev",
                                                  "dev": {"val/accuracy": 0.75}}))
    assert _read_job(job, [], "agora_dev")["reported"] == 0.75
    (job / "metrics.json").unlink()
    assert _read_job(job, [], "run")["status"] == "failed"                   # nothing to rank it on


@pytest.mark.parametrize("rank_on, words", [("run", "selects on the test"), ("official", "is not one of")])
def test_ranking_on_the_official_dev_is_refused(tmp_path, train, rank_on, words):
    p = train("-m", "hydra/sweeper=agora", f"hydra.sweeper.rank_on={rank_on}", "arch=tiny", "callbacks=agora",
              "optim.lr=1e-4,1e-3", f"hydra.sweep.dir={tmp_path / 's'}", expect=2, timeout=300)
    out = p.stdout + p.stderr
    assert words in out and "Traceback" not in out
