"""`python -m bortlab.report` over real tiny runs of train.py (a fine-tuning multirun, a pre-training run),
checked against each run's own metrics.json and .hydra/overrides.yaml read here with json and yaml."""
import base64
import csv
import json
import os
import re

import yaml

from zygote import python

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report(*args, cwd):
    return python("-m", "bortlab.report", *args, cwd=cwd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pngs(html: str) -> list[bytes]:
    return [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def check_row(row, m):
    """One report.csv row against the run's metrics.json: every dev (or held-out) metric, objective, costs."""
    dev = m.get("dev") or m["heldout"]
    assert dev and all(float(row[k]) == v for k, v in dev.items())
    assert float(row["objective"]) == m["objective"]
    assert int(row["params.net"]) == m["params"]["net"] and int(row["params.effective"]) == m["params"]["effective"]
    assert row["ops_per_forward_128"] == str(m.get("ops_per_forward_128", ""))
    assert int(row["steps"]) == m["steps"] and float(row["train_seconds"]) == m["train_seconds"]
    assert (row["task"], row["init"]) == (m["task"], m["init"])
    assert row["tuple"] == "(" + ", ".join(map(str, m["tuple"])) + ")"


def test_report_of_a_real_multirun(tmp_path, train, data_root):
    sweep = tmp_path / "sweep"
    train("-m", "arch=tiny", "task=glue/rte", "model.init=scratch", "trainer.max_steps=4", "optim.lr=1e-4,3e-4",
          "data.batch_size=8", "logger=csv", "predict=false", f"hydra.sweep.dir={sweep}", "trainer.limit_val_batches=2",
          "trainer.val_check_interval=2", "trainer.enable_progress_bar=false", "task.max_length=64")
    assert sorted(p.parent.name for p in sweep.rglob("metrics.json")) == ["0", "1"]
    (sweep / "2").mkdir()
    (sweep / "2" / "metrics.json").write_text('{"task": "glue/rte", "objec')     # a half-written file
    r = report(sweep, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"skipping {sweep / '2' / 'metrics.json'}" in r.stderr and "Traceback" not in r.stderr
    assert str(sweep / "report.csv") in r.stdout and str(sweep / "report.html") in r.stdout

    rows = read_csv(sweep / "report.csv")
    assert [row["run"] for row in rows] == ["0", "1"]
    for row in rows:
        run = sweep / row["run"]
        check_row(row, json.loads((run / "metrics.json").read_text()))
        assert f"optim.lr={row['optim.lr']}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert sorted(float(row["optim.lr"]) for row in rows) == [1e-4, 3e-4]
    assert {row["arch"] for row in rows} == {"tiny"}        # an override at one value is a column too

    html = (sweep / "report.html").read_text()
    assert html.count('<tr class="run">') == 2
    assert "objective and dev metrics by optim.lr" in html and "objective vs cost" in html
    assert "learning curves" in html                    # both runs wrote history.json
    images = pngs(html)
    assert len(images) == 3 and all(png[:8] == PNG_MAGIC for png in images)
    assert not re.search(r'(?:src|href)="(?!data:)', html)      # self-contained: nothing fetched

    # one run directory, the report elsewhere
    r = report(sweep / "1", "--out", tmp_path / "one", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (row,) = read_csv(tmp_path / "one" / "report.csv")
    assert row["run"] == "." and row["optim.lr"] == "0.0003"
    assert not (sweep / "1" / "report.csv").exists()


def test_report_of_a_pretraining_run(tmp_path, train, data_root):
    sents = [r.split("\t")[0] for r in (data_root / "glue" / "SST-2" / "train.tsv").read_text().splitlines()[1:401]]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(sents[k:k + 8]) for k in range(0, 400, 8)) + "\n")
    run = tmp_path / "pre"
    train("task=pretrain/mlm", "arch=tiny", f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}",
          "trainer.max_steps=2", "task.eval_every=1", "trainer.enable_progress_bar=false", "data.batch_size=4",
          "task.max_length=32", "logger=csv", f"hydra.run.dir={run}")
    r = report(run, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (row,) = read_csv(run / "report.csv")
    m = json.loads((run / "metrics.json").read_text())
    check_row(row, m)
    assert "val/ppl" in m["heldout"]
    html = (run / "report.html").read_text()
    assert html.count('<tr class="run">') == 1 and "learning curves" in html
    assert all(png[:8] == PNG_MAGIC for png in pngs(html)) and len(pngs(html)) == 2   # cost, curves: no sweep


def test_no_runs_is_one_clear_message_and_exit_2(tmp_path):
    (tmp_path / "empty" / "0").mkdir(parents=True)
    for target in (tmp_path / "empty", tmp_path / "missing"):
        r = report(target, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert str(target) in r.stderr and "metrics.json" in r.stderr and "multirun" in r.stderr
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["0"]     # nothing written
