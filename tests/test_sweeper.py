"""The `fptas` Hydra sweeper end to end, through a toy Hydra app (tests/apps/toy.py) whose jobs return a
synthetic ABnC error: discovery, outputs, agreement with the pure FPTAS, resume, launchers, failures."""
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from bortlab.models.arch import Arch
from bortlab.search import SearchSpace, search
from bortlab.search.pareto import knee
from bortlab.search.synthetic import ABnCInstance
from zygote import python

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps"


def run_toy(tmp_path, *args, env=None):
    cmd = [str(APP / "toy.py"), "-m", "hydra/sweeper=fptas", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweeper.wandb=false", f"log_file={tmp_path / 'calls.jsonl'}", *args]
    proc = python(*cmd, cwd=tmp_path, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})})
    return proc, proc.stdout + proc.stderr


def calls(tmp_path):
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def in_process(eps, lrs, space="tiny", **search_kw):
    """The same search run by the pure module on the toy app's own config: the sweeper must agree."""
    conf = yaml.safe_load((APP / "conf" / "toy.yaml").read_text())
    base = Arch.from_dict(yaml.safe_load((APP / "conf" / "arch" / "small.yaml").read_text())["arch"])
    cands = SearchSpace.from_config(yaml.safe_load((APP / "conf" / "search" / f"{space}.yaml").read_text()), base=base).candidates()
    inst = ABnCInstance(**conf["instance"])
    return search(cands, inst.evaluate, eps, thetas=[{"optim.lr": lr} for lr in lrs], **search_kw), cands, inst


def test_plugin_is_discovered_from_the_installed_package():
    code = ("from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
            "from hydra.core.config_store import ConfigStore; import inspect; "
            "s = [p for p in Plugins.instance().discover(Sweeper) if p.__name__ == 'FPTASSweeper']; "
            "print(inspect.getfile(s[0])); print('fptas.yaml' in ConfigStore.instance().repo['hydra']['sweeper'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout.split()
    import hydra_plugins.bortlab_fptas_sweeper as pkg

    assert Path(out[0]).parent == Path(pkg.__file__).parent and out[1] == "True"
    # namespace package: no __init__.py in hydra_plugins itself, or Hydra's own plugins would be hidden
    assert not (Path(pkg.__file__).parents[1] / "__init__.py").exists()


def test_plugin_is_discovered_from_a_built_wheel(tmp_path):
    """A regular (non-editable) install: build the wheel (from a copy, so no build/ lands in the checkout),
    unpack it as a site dir, hide the source tree."""
    src = tmp_path / "src_copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(src)], check=True, capture_output=True)
    site = tmp_path / "site"
    zipfile.ZipFile(next(tmp_path.glob("bortlab-*.whl"))).extractall(site)
    # hide only the source tree: the venv may live inside the checkout (CI does ./run.sh there)
    hidden = str(REPO / "src")
    code = (f"import sys; sys.path = [p for p in sys.path if not p.startswith({hidden!r})]; sys.path.insert(0, {str(site)!r}); "
            "from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; import inspect; "
            "print([inspect.getfile(p) for p in Plugins.instance().discover(Sweeper) if p.__name__ == 'FPTASSweeper'][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout.strip()
    assert Path(out).is_relative_to(site)


def test_sweep_agrees_with_the_pure_fptas_writes_outputs_and_resumes(tmp_path):
    expected, cands, inst = in_process(0.3, [1e-4, 1e-3])
    evaluated = [c for c in expected.table if c.e is not None and math.isfinite(c.e)]
    cap = sorted(c.e for c in evaluated)[len(evaluated) // 2]       # the median error: some pass, some not
    args = ["search=tiny", "hydra.sweeper.epsilon=0.3", "hydra.sweeper.steps=7", "hydra.sweeper.max_batch_size=5",
            "optim.lr=1e-4,1e-3", f"hydra.sweeper.error_cap={cap!r}", "hydra.sweeper.min_speedup=2"]
    proc, log = run_toy(tmp_path, *args)
    assert proc.returncode == 0, log
    first = calls(tmp_path)
    assert len(first) == expected.n_evaluations < 2 * len(cands)        # one job per (representative, θ)
    assert {c["steps"] for c in first} == {7} and {c["lr"] for c in first} == {1e-4, 1e-3}
    sweep = tmp_path / "sweep"
    res = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    b = expected.best
    assert res["best_params"] == {"arch.depth": str(b.depth), "arch.heads": str(b.heads), "arch.hidden": str(b.hidden),
                                  "arch.intermediate": str(b.intermediate), "optim.lr": str(expected.best_theta["optim.lr"]),
                                  "++trainer.max_steps": "7"}
    assert res["best_value"] == pytest.approx(expected.best_W, rel=1e-12)
    assert len(res["solutions"]) == len(expected.front)
    # beside argmax W: the knee of the (i, e) front and the cheapest candidate under the error cap
    knee_row = evaluated[knee([(c.i, c.e) for c in evaluated])]
    assert res["knee"]["arch"] == str(knee_row.arch) and res["knee"]["e"] == pytest.approx(knee_row.e)
    capped = min((c for c in evaluated if c.e <= cap), key=lambda c: (c.i, c.e))
    assert res["error_cap"] == pytest.approx(cap) and res["cheapest_under_cap"]["arch"] == str(capped.arch)
    assert res["cheapest_under_cap"]["i"] == pytest.approx(capped.i) and res["cheapest_under_cap"]["e"] <= cap
    fast = min((c for c in evaluated if c.i <= expected.i_T / 2), key=lambda c: (c.e, c.i))
    assert res["min_speedup"] == 2 and res["best_at_speedup"]["arch"] == str(fast.arch)
    rows = list(csv.DictReader((sweep / "candidates.csv").open()))
    assert len(rows) == len(cands) and sum(r["status"] == "evaluated" for r in rows) * 2 == len(first)
    assert (sweep / "pareto.png").stat().st_size > 0 and (sweep / "multirun.yaml").exists()

    # same command, same sweep dir: nothing is trained again, the answer is the same
    proc, log = run_toy(tmp_path, *args)
    assert proc.returncode == 0, log
    assert "resuming" in log and len(calls(tmp_path)) == len(first)
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_params"] == res["best_params"]


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    proc, log = run_toy(tmp_path, "hydra.sweeper.space=tiny", "hydra.sweeper.epsilon=1.0", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=2", "hydra.sweeper.plot=false")
    assert proc.returncode == 0, log
    jobs = calls(tmp_path)
    expected, _, _ = in_process(1.0, [1e-4])
    assert len(jobs) == expected.n_evaluations and len({j["pid"] for j in jobs}) >= 2
    res = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert res["best_value"] == pytest.approx(expected.best_W, rel=1e-12)


def test_space_from_sweep_overrides_and_arch_group_choices(tmp_path):
    proc, log = run_toy(tmp_path, "arch=small,wide", "arch.depth=1,2", "arch.heads=2,4", "arch.hidden=64",
                        "arch.intermediate=range(128,385,128)", "hydra.sweeper.epsilon=1e-6", "hydra.sweeper.plot=false",
                        "hydra.sweeper.thetas=[{optim.lr:0.002}]")
    assert proc.returncode == 0, log
    rows = list(csv.DictReader((tmp_path / "sweep" / "candidates.csv").open()))
    assert len(rows) == 2 * 2 * 2 * 3 and all(r["status"] == "evaluated" for r in rows)  # ε -> 0: exhaustive
    assert {json.loads(r["arch"])["vocab_size"] for r in rows} == {1000, 5000}  # both arch group choices
    assert {tuple(c["tuple"]) for c in calls(tmp_path)} == {(d, a, 64, i) for d in (1, 2) for a in (2, 4) for i in (128, 256, 384)}
    assert {c["lr"] for c in calls(tmp_path)} == {0.002}  # θ from hydra.sweeper.thetas


def test_failed_jobs_are_recorded_then_bounded_by_max_failure_rate(tmp_path):
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=1.0", "fail_if='depth == 1'",
                        "hydra.sweeper.max_failure_rate=0.6", "hydra.sweeper.plot=false")
    assert proc.returncode == 0, log
    rows = list(csv.DictReader((tmp_path / "sweep" / "candidates.csv").open()))
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and {r["depth"] for r in failed} == {"1"} and all(r["e[]"] == "inf" for r in failed)
    assert "job #0 failed" in log
    # the cheapest cells come first, so with batches of 2 the first batch already breaks the bound
    proc, log = run_toy(tmp_path / "sweep", "search=tiny", "hydra.sweeper.epsilon=1.0", "fail_if='depth == 1'",
                        "hydra.sweeper.max_failure_rate=0.0", "hydra.sweeper.max_batch_size=2")
    assert proc.returncode != 0 and "2 of 2 evaluations failed, more than max_failure_rate=0.0" in log, log


@pytest.mark.parametrize("args, message", [
    (["garbage=true", "hydra.sweeper.max_batch_size=1"], r"Job #0 \(.*returned 'not a number' \(str\) instead of a number"),
    (["hydra.sweeper.epsilon=0"], "epsilon must be a positive finite number"),
    (["arch.heads=3"], "search space is empty"),
    (["arch.depth=interval(1,4)"], "enumerates discrete values"),
])
def test_bad_input_gives_a_clear_error(tmp_path, args, message):
    proc, log = run_toy(tmp_path, "search=tiny", *args)
    assert proc.returncode != 0
    assert __import__("re").search(message, log), log


def test_a_perfect_score_is_recorded_not_fatal(tmp_path):
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=0.01", "perfect_if='depth == 3 and intermediate == 128'")
    assert proc.returncode == 0, log
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "candidates.csv")))
    perfect = [r for r in rows if r["e"] not in ("", None) and float(r["e"]) == 0.0]
    assert perfect, log
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_params"]["arch.depth"] == "3" and best["best_params"]["arch.intermediate"] == "128", best


@pytest.mark.parametrize("args, message", [
    (["hydra.sweeper.epsilon=0"], "epsilon must be a positive finite number"),
    (["hydra.sweeper.epsilon=-1"], "epsilon must be a positive finite number"),
    (["arch.heads=3"], "search space is empty"),
    (["hydra.sweeper.min_speedup=0"], "min_speedup=0.0 must be a positive factor"),
])
def test_bad_sweeps_exit_2_with_one_paragraph_and_no_traceback(tmp_path, args, message):
    proc, log = run_toy(tmp_path, "search=tiny", *args)
    assert proc.returncode == 2 and message in log and "Traceback" not in log, log
    assert not calls(tmp_path)          # found before any job was launched


def test_a_rerun_with_other_settings_refuses_to_reuse_the_evaluations(tmp_path):
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=1.0", "hydra.sweeper.steps=50")
    assert proc.returncode == 0, log
    n = len(calls(tmp_path))
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=1.0", "hydra.sweeper.steps=60")
    assert proc.returncode == 2 and "other settings (steps: 50 then, 60 now)" in log and "Traceback" not in log, log
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=1.0", "hydra.sweeper.steps=50", "optim.lr=3e-4")
    assert proc.returncode == 2 and "overrides: now optim.lr=0.0003)" in log, log
    assert len(calls(tmp_path)) == n     # nothing was trained by the refused runs
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=1.0", "hydra.sweeper.steps=50")
    assert proc.returncode == 0 and "(0 launched now)" in log and len(calls(tmp_path)) == n, log


def test_no_space_is_a_clear_error(tmp_path):
    proc, log = run_toy(tmp_path)
    assert proc.returncode != 0 and "has no search space" in log


def test_wandb_summary_run_is_written_offline(tmp_path):
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=1.0", "hydra.sweeper.wandb=true",
                        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, log
    runs = list((tmp_path / "sweep" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), log


@pytest.mark.parametrize("value", [None, True, False, 3, 1e-4, 2.5e-5, "adamw", "a b,c=d", "it's", [0.9, 0.98], {"a": 1, "b": "x y"}])
def test_theta_values_render_as_overrides_hydra_parses_back(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.bortlab_fptas_sweeper.command_line import render

    assert OverridesParser.create().parse_override(f"optim.x={render(value)}").value() == value


def test_refine_zero_runs_the_epsilon_pass_alone_as_the_pure_search_does(tmp_path):
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=0.3", "hydra.sweeper.refine=0",
                        "hydra.sweeper.plot=false", "optim.lr=1e-3")
    assert proc.returncode == 0, log
    alone, _, _ = in_process(0.3, [1e-3], refine=0)
    refined, _, _ = in_process(0.3, [1e-3])
    assert alone.n_evaluations < refined.n_evaluations      # else this test could not tell the option was read
    assert len(calls(tmp_path)) == alone.n_evaluations


def test_replicates_average_seeds_and_record_each_job(tmp_path):
    """e(arch, θ) = the mean over replicate jobs: with seeds 0, 1, 2 scaling the toy error by 0.8, 1, 1.2 the
    sweep must agree with the noiseless pure search, launch three jobs per evaluation and log each of them."""
    expected, cands, inst = in_process(0.3, [1e-4])
    args = ["search=tiny", "hydra.sweeper.epsilon=0.3", "noise=0.2", "seed=7",      # seed=7: the replicates win
            "hydra.sweeper.replicates={seed: [0, 1, 2]}"]
    proc, log = run_toy(tmp_path, *args)
    assert proc.returncode == 0, log
    jobs = calls(tmp_path)
    assert len(jobs) == 3 * expected.n_evaluations and sorted({j["seed"] for j in jobs}) == [0, 1, 2]
    res = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert res["best"]["arch"] == str(expected.best) and res["best_value"] == pytest.approx(expected.best_W, rel=1e-9)
    reps = list(csv.DictReader((tmp_path / "sweep" / "replicates.csv").open()))
    assert len(reps) == len(jobs) and {r["replicate"] for r in reps} == {"seed=0", "seed=1", "seed=2"}
    e = expected.best_error                                     # errors e·0.8, e, e·1.2: sd 0.2 e, SE 0.2 e / √3
    assert res["replicates"]["best_error_se"] == pytest.approx(0.2 * e / math.sqrt(3), rel=1e-9)
    assert yaml.safe_load((tmp_path / "sweep" / "sweep_settings.json").read_text())["replicates"] == {"seed": [0, 1, 2]}


def test_extracted_candidates_are_costed_by_their_effective_size(tmp_path):
    """model.init=extract: candidates inherit the source's embeddings, so p defaults to the parameters without
    them (the paper's effective size); the sweep must agree with the pure search run on that cost."""
    from bortlab.search import CostModel

    cost = CostModel(effective=True)
    expected, cands, inst = in_process(0.3, [1e-4], params=cost.params)
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=0.3", "model.init=extract")
    assert proc.returncode == 0, log
    res = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert "effective" in str(res["cost_model"])
    assert res["best"]["arch"] == str(expected.best) and res["best_value"] == pytest.approx(expected.best_W, rel=1e-9)


def test_error_ceiling_zeroes_w_at_and_above_it(tmp_path):
    """An explicit ceiling agrees with the pure search given the same one; objective=rescaled sets it to 1."""
    errors = sorted(c.e for c in in_process(0.3, [1e-4])[0].table if c.e is not None and math.isfinite(c.e))
    ceiling = errors[len(errors) // 2]
    expected = in_process(0.3, [1e-4], error_ceiling=ceiling)[0]
    proc, log = run_toy(tmp_path, "search=tiny", "hydra.sweeper.epsilon=0.3", f"hydra.sweeper.error_ceiling={ceiling!r}")
    assert proc.returncode == 0, log
    res = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert res["error_ceiling"] == pytest.approx(ceiling) and res["best"]["e"] < ceiling
    assert res["best"]["arch"] == str(expected.best) and res["best_value"] == pytest.approx(expected.best_W, rel=1e-9)
    (tmp_path / "r").mkdir()
    proc, log = run_toy(tmp_path / "r", "search=tiny", "hydra.sweeper.epsilon=0.3", "objective=rescaled")
    assert proc.returncode == 0, log
    assert yaml.safe_load((tmp_path / "r" / "sweep" / "optimization_results.yaml").read_text())["error_ceiling"] == 1.0
