"""What a search leaves on disk: candidates.csv round trip (the resume state), results yaml, pareto.png."""
import csv
import json
import math

import yaml

from bortlab.models.arch import PRESETS
from bortlab.search import SearchSpace, search
from bortlab.search.report import plot_pareto, read_done, results_dict, write_candidates_csv, write_results_yaml
from bortlab.search.synthetic import ABnCInstance

SPACE = SearchSpace.from_config({"depth": [1, 2, 3, 4], "heads": [2, 4], "hidden": [64, 128],
                                 "intermediate": [128, 256, 512]}, base=PRESETS["tiny"]).candidates()


def test_candidates_csv_round_trips_every_evaluation(tmp_path):
    inst = ABnCInstance.sample(0, SPACE, lrs=[1e-3, 1e-4])
    thetas = [{"lr": 1e-3}, {"lr": 1e-4}]
    fail = {SPACE[0]}
    r = search(SPACE, lambda pairs: [math.inf if a in fail else inst.error(a, t) for a, t in pairs], 0.2, thetas=thetas)
    path = tmp_path / "candidates.csv"
    write_candidates_csv(path, r.table, thetas)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(SPACE)
    assert {row["status"] for row in rows} == {"evaluated", "skipped", "failed"}
    # the file read with the stdlib, against the evaluator itself (not against the table the file was written
    # from, and not through read_done, which would share a writer/reader mistake): every recorded error is
    # the instance's error of that architecture under that θ, inf where the job failed
    by_fields = {tuple(sorted(a.to_dict().items())): a for a in SPACE}
    recorded = {}
    for row in rows:
        arch = by_fields[tuple(sorted(json.loads(row["arch"]).items()))]
        assert (int(row["depth"]), int(row["heads"]), int(row["hidden"]), int(row["intermediate"])) == arch.tuple
        for key, theta in (("lr=0.001", thetas[0]), ("lr=0.0001", thetas[1])):
            if row[f"e[{key}]"] != "":
                recorded[(arch, key)] = float(row[f"e[{key}]"])
                assert recorded[(arch, key)] == (math.inf if arch in fail else inst.error(arch, theta)), (row, key)
        assert (row["status"] == "skipped") == (not any((arch, k) in recorded for k in ("lr=0.001", "lr=0.0001")))
    assert len(recorded) == r.n_evaluations
    # read_done (the resume state) gives back exactly those pairs
    done = read_done(path)
    assert done == recorded
    assert all(math.isinf(done[(SPACE[0], k)]) for k in ("lr=0.001", "lr=0.0001"))
    assert [p.name for p in tmp_path.iterdir()] == ["candidates.csv"]  # no temporary file left behind
    assert read_done(tmp_path / "missing.csv") == {}


def test_results_yaml_and_plot(tmp_path):
    inst = ABnCInstance.sample(1, SPACE)
    r = search(SPACE, inst.evaluate, 0.2)
    write_results_yaml(tmp_path / "optimization_results.yaml", results_dict(r))
    doc = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert doc["best_value"] == r.best_W and doc["counts"]["evaluations"] == r.n_evaluations
    assert doc["best_params"]["depth"] == r.best.depth
    assert len(doc["solutions"]) == len(r.front) and all(len(s["values"]) == 3 for s in doc["solutions"])
    plot_pareto(tmp_path / "pareto.png", r)
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
