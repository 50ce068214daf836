"""bench/bench_agora_theta.py (issue 19) end to end at a tiny budget on real SST-2 rows: the Θ loop through
`hydra/sweeper=agora` and plain enumeration of the same Θ, a rerun that trains nothing, and --report's picks."""
import csv
import json
import os
from pathlib import Path

import pytest

from zygote import python

REPO = Path(__file__).resolve().parents[1]
TINY = "arch=tiny task.max_length=32"


def _run(script, *args, expect=0):
    p = python(REPO / "bench" / script, *args, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == expect, f"exit {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}"
    return p


def test_theta_bench_runs_both_methods_resumes_and_reports(tmp_path, data_root):
    if not (data_root / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip("no SST-2 copy")
    shared = ["--data", str(data_root), "--labeller-dir", str(tmp_path / "lab"), "--reserve", "300", "--subset", "20",
              "--holdout", "20", "--steps", "8", "--batch", "8", "--points-per-round", "6", "--student", TINY,
              "--labeller-args", TINY, "--labeller-steps", "3"]
    out, table = tmp_path / "theta.jsonl", tmp_path / "theta.csv"
    flags = [*shared, "--theta-lr", "1e-4", "1e-3", "--theta-k", "2", "--enum-seeds", "0", "--out", str(out),
             "--csv", str(table), "--dir", str(tmp_path / "runs")]
    missing = _run("bench_agora_theta.py", *flags, expect=2)          # no labeller yet: says which bench makes it
    assert "bench_agora_controls.py first" in missing.stderr and "Traceback" not in missing.stderr
    _run("bench_agora_controls.py", *shared, "--arms", "A0", "--seeds", "0", "--out", str(tmp_path / "c.jsonl"),
         "--workdir", str(tmp_path / "w"))
    _run("bench_agora_theta.py", *flags)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    loop = [r for r in rows if r["method"] == "theta_loop"]
    enum = [r for r in rows if r["method"] == "enumeration"]
    assert [r["round"] for r in loop] == [1, 1, 2]                    # successive halving: 2 sets -> 1
    assert sorted(tuple(r["theta"]) for r in enum) == [("optim.lr=1e-3", "agora.k=2"), ("optim.lr=1e-4", "agora.k=2")]
    # the loop's later rounds trained on the pool of points its earlier rounds fed forward
    sweep = tmp_path / "runs" / "theta_loop"
    last = next(r for r in loop if r["round"] == 2)
    assert "final.jsonl" in (Path(last["dir"]) / ".hydra" / "overrides.yaml").read_text()

    again = _run("bench_agora_theta.py", *flags)                       # a rerun trains nothing
    assert "every job with these settings is on record" in again.stdout and "nothing to run" in again.stdout
    assert "labeller" not in again.stdout
    assert out.read_text().count("\n") == 5 and len([p for p in sweep.iterdir() if p.name.isdigit()]) == 3

    rep = _run("bench_agora_theta.py", *flags, "--report")
    with open(table, newline="") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 5
    for method, mine in (("theta_loop", loop), ("enumeration", enum)):
        picked = [r for r in got if r["method"] == method and r["picked"] == "1"]
        assert len(picked) == 1
        # the pick is the job with the best Agora-dev score, computed here from the JSONL rows
        assert float(picked[0]["agora_dev_score"]) == pytest.approx(max(r["agora_dev_score"] for r in mine), abs=1e-6)
    assert "Θ loop − enumeration" in rep.stdout

    # ranked on D, a tune split Agora never reads; each pick then trained again and scored once on the official dev
    _run("bench_agora_theta.py", *flags, "--rank-on", "run")
    rows = [json.loads(x) for x in out.read_text().splitlines()][5:]
    jobs = [r for r in rows if not r.get("final")]
    assert len(jobs) == 5 and all(r["dev_accuracy"] is None for r in jobs)          # no official score on jobs
    assert all("data.tune_split=20" in r["overrides"] for r in jobs)
    finals = {r["method"]: r for r in rows if r.get("final")}
    assert set(finals) == {"theta_loop", "enumeration"} and all(0 <= r["dev_accuracy"] <= 1 for r in finals.values())
    for m in finals:                    # the pick: the best score on D, computed here from the rows
        best = max((r for r in jobs if r["method"] == m), key=lambda r: r["rank_score"])
        assert finals[m]["theta"] == best["theta"]
    rep = _run("bench_agora_theta.py", *flags, "--rank-on", "run", "--report")
    assert "its D (tune split)" in rep.stdout and f"{100 * finals['theta_loop']['dev_accuracy']:.2f}" in rep.stdout


def test_bad_theta_is_one_paragraph_and_exit_2(data_root):
    p = _run("bench_agora_theta.py", "--data", str(data_root), "--theta-lr", "1e-4", "fast", expect=2)
    assert "--theta-lr must be distinct positive numbers" in p.stderr and "Traceback" not in p.stderr
