"""bench/bench_agora_controls.py (issue 19) end to end at a tiny budget on real SST-2 rows: the labeller, the five
arms of one seed as plain train.py runs, a rerun that skips them, and --report's CSV and paired difference."""
import csv
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from zygote import python

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_agora_controls.py"
TINY = "arch=tiny task.max_length=32"


def _bench(*args, expect=0):
    p = python(BENCH, *args, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == expect, f"exit {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}"
    return p


def _module():
    spec = importlib.util.spec_from_file_location("bench_agora_controls", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_runs_resumes_and_reports(tmp_path, data_root):
    if not (data_root / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip("no SST-2 copy")
    out, table, lab = tmp_path / "rows.jsonl", tmp_path / "controls.csv", tmp_path / "labeller"
    flags = ["--data", str(data_root), "--out", str(out), "--csv", str(table), "--labeller-dir", str(lab),
             "--workdir", str(tmp_path / "work"), "--seeds", "0", "--jobs", "2", "--threads", "1",
             "--reserve", "300", "--subset", "20", "--holdout", "20", "--steps", "8", "--batch", "8",
             "--points-per-round", "6", "--k", "2", "--student", TINY, "--labeller-args", TINY,
             "--labeller-steps", "3"]
    first = _bench(*flags)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["arm"] for r in rows) == ["A0", "A1", "A2", "A3", "A4", "labeller"], first.stdout
    by = {r["arm"]: r for r in rows}
    assert by["labeller"]["steps"] == 3 and (lab / "checkpoints" / "last.ckpt").exists()   # kept for the arms
    assert not list((tmp_path / "work").iterdir())                   # the arms' run dirs are gone
    assert all(by[a]["steps"] == 8 for a in ("A0", "A1", "A2", "A3", "A4"))
    assert by["A0"]["train_rows"] == 20 and by["A1"]["train_rows"] == 40                # S, S ∪ H
    assert by["A4"]["train_rows"] == 20 + 3 * 6                                         # S + a pool as large as Agora's
    for arm, source in (("A2", "mistakes"), ("A3", "random")):
        assert [r["step"] for r in by[arm]["rounds"]] == [2, 4, 6], arm                # 25/50/75% of the steps
        assert {r["source"] for r in by[arm]["rounds"]} == {source}
    assert by["A3"]["rounds"][0]["sources"] == 3                                       # ceil(6 / k) random H rows
    assert by["A4"]["teacher_dev_accuracy"] == pytest.approx(by["labeller"]["dev_accuracy"])

    again = _bench(*flags)                       # a rerun trains nothing, not even the labeller's check
    assert "5 arm runs already" in again.stdout and "0 to run" in again.stdout
    assert "labeller" not in again.stdout
    assert out.read_text().count("\n") == 6

    rep = _bench(*flags, "--report")
    assert table.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(table, newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["arm", "seed", "dev_accuracy"]
    assert [(r["arm"], r["seed"]) for r in got] == [("labeller", ""), *[(a, "0") for a in ("A0", "A1", "A2", "A3", "A4")]]
    assert float(got[3]["dev_accuracy"]) == pytest.approx(by["A2"]["dev_accuracy"], abs=1e-6)
    # the paired difference, computed here from the JSONL rows
    acc = {a: np.array([by[a]["dev_accuracy"]]) for a in ("A1", "A2", "A3", "A4")}
    best = max(("A1", "A3", "A4"), key=lambda a: acc[a].mean())
    diff = 100 * (acc["A2"] - acc[best]).mean()
    m = re.search(r"A2 - best control \((A\d)\): (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\] points", rep.stdout)
    assert m, rep.stdout
    assert m.group(1) == best and float(m.group(2)) == pytest.approx(diff, abs=0.006)
    assert float(m.group(3)) == pytest.approx(diff, abs=0.006) == float(m.group(4))      # one seed: no spread
    assert "gate:" in rep.stdout and "verdict:" in rep.stdout
    h = ", ".join(f"{100 * x['agora_dev_score']:.1f}" for x in by["A2"]["rounds"])
    assert f"A2: Agora-dev (H) accuracy at the rounds (steps [2, 4, 6]): {h}; reported accuracy at the end " \
           f"{100 * by['A2']['dev_accuracy']:.1f}" in rep.stdout

    # tuning: only A2, scored on a tune split drawn after H (data.tune_split), never on the official dev
    tune = ["--arms", "A2", "--", "data.tune_split=20", "data.tune_skip=20"]
    _bench(*flags, *tune)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 7 and rows[-1]["arm"] == "A2" and rows[-1]["dev_split"] == "tune"
    assert all(r.get("dev_split", "dev") == "dev" for r in rows[:-1])
    assert "tune split" in _bench(*flags, "--report", *tune).stdout


def test_summary_pairs_by_seed_against_the_best_control():
    """The report's statistics on ten seeds of made-up scores, against numpy done here."""
    bench = _module()
    rng = np.random.default_rng(3)
    base = rng.normal(0.80, 0.01, 10)                         # a per-seed effect every arm shares
    shift = {"A0": -0.02, "A1": 0.0, "A2": 0.015, "A3": 0.004, "A4": 0.006}
    acc = {a: base + s + rng.normal(0, 0.003, 10) for a, s in shift.items()}
    rows = [{"arm": a, "seed": s, "dev_accuracy": float(acc[a][s])} for a in acc for s in range(10)]
    rows.remove(next(r for r in rows if r["arm"] == "A3" and r["seed"] == 9))   # seed 9 is not complete
    s = bench.summarise(rows, labeller_acc=0.90)
    seeds = list(range(9))
    best = max(("A1", "A3", "A4"), key=lambda a: acc[a][seeds].mean())
    d = acc["A2"][seeds] - acc[best][seeds]
    boot = d[np.random.default_rng(0).integers(0, 9, size=(10_000, 9))].mean(axis=1)
    assert s["seeds"] == seeds and s["best_control"] == best
    np.testing.assert_allclose(s["a2_minus_best"], [d.mean(), *np.quantile(boot, [0.025, 0.975])], atol=1e-12)
    assert s["gate"] is True
    assert s["verdict"][0].startswith("Agora works") == (d.mean() >= 0.01 and np.quantile(boot, 0.025) > 0)
    assert bench.summarise(rows, labeller_acc=0.81)["verdict"][0].startswith("void")


@pytest.mark.parametrize("flags, words", [
    (["--subset", "21"], "must be even"),
    (["--round-at", "0.5", "1.5"], "--round-at"),
    (["--reserve", "900"], "too small"),
    (["--seeds", "0", "0"], "--seeds"),
])
def test_bad_input_is_one_paragraph_and_exit_2(flags, words, data_root, tmp_path):
    p = _bench("--data", str(data_root), "--out", str(tmp_path / "x.jsonl"), *flags, expect=2)
    assert words in p.stderr and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
