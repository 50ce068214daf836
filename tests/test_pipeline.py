"""The pipeline (pipeline.py, bortlab.pipeline): resumable jobs, the baselines' shapes, and the documented
command end to end at a tiny budget (a real search on the KD proxy, distillation, fine-tuning, export, latency,
report)."""
import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from bortlab.models.arch import Arch
from bortlab.pipeline.jobs import Job, JobFailed, run_jobs
from bortlab.pipeline.models import exportable, model_specs, width_cut
from zygote import python

REPO = Path(__file__).resolve().parents[1]
WRITE = "import sys, pathlib; d = pathlib.Path(sys.argv[-1]); d.mkdir(parents=True, exist_ok=True); " \
        "(d / 'metrics.json').write_text('{}'); open(sys.argv[1], 'a').write('x')"


def test_jobs_skip_what_is_finished_and_rerun_what_changed(tmp_path):
    counter = tmp_path / "count"
    job = Job("a/b", ["-c", WRITE, str(counter)], dir_arg=None, root=tmp_path)
    run_jobs([job])
    run_jobs([job])                                        # finished: not run again
    assert counter.read_text() == "x" and job.finished()
    other = Job("a/b", ["-c", WRITE, str(counter), "changed"], dir_arg=None, root=tmp_path)
    assert other.dir != job.dir and not other.finished()   # other settings: a directory of its own
    run_jobs([other])
    assert counter.read_text() == "xx"
    # parallelism is not a setting of the result: the same job with other launcher/batch sizes is finished
    wider = Job("a/b", ["-c", WRITE, str(counter), "hydra.launcher.n_jobs=4", "hydra.sweeper.max_batch_size=4"],
                dir_arg=None, root=tmp_path)
    assert wider.dir == job.dir and wider.finished()


def test_a_failed_job_is_named_with_its_last_words_after_the_others_finish(tmp_path):
    counter = tmp_path / "count"
    bad = Job("bad", ["-c", "import sys; print('the reason'); sys.exit(3)"], dir_arg=None, root=tmp_path)
    good = Job("good", ["-c", WRITE, str(counter)], dir_arg=None, root=tmp_path)
    with pytest.raises(JobFailed, match=r"bad: exit 3: the reason"):
        run_jobs([bad, good], n_parallel=2)
    assert good.finished() and not bad.finished()


def test_baselines_have_the_promised_shapes():
    source = Arch.preset("minilm")
    chosen = (3, 6, 192, 768)
    specs = {s.name: s for s in model_specs(source, chosen, 32, ["every_other_layer", "width_cut",
                                                                  "same_shape_no_distil", "same_shape_scratch"],
                                            [384, 768, 1152, 1536], [192, 288, 384])}
    assert specs["source"].shape == (6, 12, 384, 1536) and specs["bortlab"].shape == chosen
    assert specs["every_other_layer"].shape == (3, 12, 384, 1536) and specs["every_other_layer"].layers == (0, 2, 4)
    assert specs["same_shape_no_distil"].shape == chosen and not specs["same_shape_no_distil"].distil
    assert specs["same_shape_scratch"].init == "scratch"
    cut = specs["width_cut"].shape
    assert cut[0] == 6 and exportable(cut, 32)

    def ops(shape):
        d, a, h, i = shape
        return Arch(**{**source.to_dict(), "depth": d, "heads": a, "hidden": h, "intermediate": i, "head_dim": 32}).num_ops()

    target = ops(chosen)
    grid = [(6, h // 32, h, i) for h in (192, 288, 384) for i in (384, 768, 1152, 1536)]
    assert min(abs(math.log(ops(s) / target)) for s in grid) == pytest.approx(abs(math.log(ops(cut) / target)))
    assert width_cut(source, target, 32, [384], [192]) == (6, 6, 192, 384)


def test_the_documented_pipeline_runs_at_a_tiny_budget(tmp_path, data_root):
    """The command in conf/pipeline.yaml's header, with the search on (a real fptas sweep on the KD proxy over
    two candidates, two steps each) and every stage at a few steps."""
    header = (REPO / "conf" / "pipeline.yaml").read_text().splitlines()
    documented = next(line.split("python pipeline.py", 1)[1].split() for line in header if "python pipeline.py " in line
                      and "search.arch" in line)
    rows = (data_root / "glue" / "SST-2" / "train.tsv").read_text().splitlines()[1:400]
    (tmp_path / "corpus.txt").write_text("\n".join(r.split("\t")[0] for r in rows) + "\n")
    out = tmp_path / "pl"
    tiny = [f"out={out}", f"corpus={tmp_path / 'corpus.txt'}", f"data_root={data_root}", "tasks=[glue/rte]",
            "baselines=[same_shape_no_distil]",
            "search.space={depth:[1,2],heads:[6],hidden:[192],intermediate:[384],head_dim:32,source:minilm}",
            "search.replicates={seed:[0]}", "search.overrides=['hydra.sweeper.steps=2','hydra.sweeper.refine=0',"
            "'data.batch_size=4','data.heldout_max_blocks=2']",
            "distil.steps=8", "finetune.max_steps=2", "finetune.overrides=['trainer.limit_val_batches=2']",
            "latency.repeats=1", "latency.shapes=[[1,16]]", "latency.precisions=[fp32]", "jobs=2"]
    mine = {a.split("=", 1)[0] for a in tiny}
    # the documented command, its search.arch dropped (the search runs), budget keys replaced by the tiny ones
    cmd = [str(REPO / "pipeline.py"),
           *[a for a in documented if a.split("=", 1)[0] not in mine | {"search.arch"}], *tiny]
    first = python(*cmd, "until=search", cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert list(out.glob("search-*/optimization_results.yaml")) and not (out / "distil").exists()
    assert not (out / "finetune").exists() and not (out / "bort_small.csv").exists()
    proc = python(*cmd, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "search: 1 of 1 already done" in proc.stdout + proc.stderr      # until=search's result is reused
    # the fine-tunes that need no distillation (source, same_shape_no_distil) ran beside the distillation
    assert "distillation and independent fine-tuning: [3/3]" in proc.stdout + proc.stderr
    assert "fine-tuning: 2 of 3 already done" in proc.stdout + proc.stderr
    res = yaml.safe_load(next(out.glob("search-*/optimization_results.yaml")).read_text())
    # the default pick: the lowest proxy error among the candidates with >= 4x fewer operations than MiniLM
    assert res["min_speedup"] == 4 and res["best_at_speedup"]["i"] <= res["maximum_point"]["i"] / 4
    chosen = tuple(int(res["best_at_speedup"]["params"][f"arch.{k}"]) for k in ("depth", "heads", "hidden", "intermediate"))
    table = list(csv.DictReader((out / "bort_small.csv").open()))
    assert {r["model"] for r in table} == {"source", "bortlab", "same_shape_no_distil"}
    mine = next(r for r in table if r["model"] == "bortlab")
    assert (int(mine["depth"]), int(mine["heads"]), int(mine["hidden"]), int(mine["intermediate"])) == chosen
    assert all(0.0 <= float(r["score"]) <= 1.0 and float(r["latency_fp32_1x16_ms"]) > 0 for r in table)
    # distil.steps is the budget even where the tiny corpus ends first (its 3 epochs are fewer than 8 steps)
    assert json.loads(next(out.glob("distil/bortlab-*/metrics.json")).read_text())["steps"] == 8
    exported = next(out.glob("export/bortlab/glue-rte/seed0-*"))
    assert (exported / "model.onnx").exists() and json.loads((exported / "config.json").read_text())["num_hidden_layers"] == chosen[0]
    assert (out / "bort_small.md").read_text().count("\n| ") == 3 and (out / "bort_small_frontier.png").stat().st_size > 0
    # a rerun resumes: nothing is trained again
    again = python(*cmd, cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "fine-tuning: 3 of 3 already done" in again.stdout + again.stderr


def documented_pipeline_commands() -> list[tuple[str, list[str]]]:
    import re

    out = []
    for f in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "conf" / "pipeline.yaml"]:
        for line in f.read_text().splitlines():
            m = re.search(r"python pipeline\.py((?:\s+[^\s#]+)*)", line.lstrip("# "))
            if m:
                out.append((f.name, m.group(1).split()))
    return out


def test_every_documented_pipeline_command_composes(tmp_path, data_root):
    """Each `python pipeline.py ...` of the README, docs/ and conf/pipeline.yaml is a valid Hydra command line
    (the tiny end-to-end run above executes one of them; the others differ only in their arguments)."""
    commands = documented_pipeline_commands()
    assert {f for f, _ in commands} >= {"README.md", "pipeline.md", "pipeline.yaml"}
    for name, args in commands:
        proc = python(REPO / "pipeline.py", *args, "--cfg", "job", cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, (name, args, proc.stderr[-2000:])
        assert "tasks:" in proc.stdout


@pytest.mark.parametrize("args, words", [
    (["corpus=null"], "needs corpus"),
    (["corpus=/nonexistent/corpus.txt"], "corpus=/nonexistent/corpus.txt does not exist"),
    (["search.pick=middle", "corpus=__CORPUS__"], "search.pick='middle'"),
    (["search.pick=speedup", "search.min_speedup=null", "corpus=__CORPUS__"], "needs search.min_speedup > 0"),
    (["tasks=[]", "corpus=__CORPUS__"], "tasks and seeds"),
    (["until=deploy", "corpus=__CORPUS__"], "until='deploy' is not a stage"),
])
def test_bad_pipeline_input_exits_2_with_one_paragraph(tmp_path, data_root, args, words):
    (tmp_path / "c.txt").write_text("some text\n")
    args = [a.replace("__CORPUS__", str(tmp_path / "c.txt")) for a in args]
    proc = python(REPO / "pipeline.py", f"out={tmp_path / 'pl'}", f"data_root={data_root}", *args, cwd=tmp_path,
                  timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and words in out and "Traceback" not in out, out[-2000:]


def test_the_report_checks_issue_20s_targets_on_the_table():
    from bortlab.pipeline.report import markdown

    def item(model, mean, ms):
        return {"model": model, "mean": mean, "ci": (mean - 0.01, mean + 0.01), "seeds": 3, "tasks": {"glue/sst2": mean},
                "kept_gain_mean": 0.5, "shape": (2, 8, 288, 1152), "latency": {"latency_fp32_8x128_ms": ms},
                "exported": True}

    items = [item("source", 0.80, 100.0), item("bortlab", 0.77, 20.0), item("width_cut", 0.78, 19.0),
             item("every_other_layer", 0.79, 30.0)]
    text = markdown(items)
    # 0.77 / 0.80 = 96.25% >= 95%; 100 / 20 = 5x >= 4x; width_cut is faster (19 < 20) and better (0.78 > 0.77)
    assert "bortlab keeps 96.2% of the source's mean score (target ≥ 95%): met" in text
    assert "fp32_8x128: 5.00× faster than the source (target ≥ 4×): met; baselines both faster and better: width_cut" in text
    assert "| 97.5% |" in text                                    # width_cut's share of the source's mean
    slow = markdown([item("source", 0.80, 100.0), item("bortlab", 0.70, 50.0)])
    assert "keeps 87.5%" in slow and "missed" in slow and "better: none" in slow


def test_a_task_the_source_did_not_learn_is_named_not_counted():
    # MRPC's constant F1 is 0.8122: a source stuck there has no gain to keep, and every student "keeps 100%" of
    # nothing; the report must say so instead of declaring the target met
    from bortlab.pipeline.report import markdown, summary

    def row(model, task, seed, score):
        return {"model": model, "task": task, "seed": seed, "score": score, "depth": 2, "heads": 9, "hidden": 288,
                "intermediate": 1152, "exported": True, "latency_fp32_8x128_ms": 100.0 if model == "source" else 20.0}

    constants = {"glue/mrpc": 0.8122, "glue/sst2": 0.5092}
    flat = [row(m, "glue/mrpc", s, 0.8122) for m in ("source", "bortlab") for s in (0, 1, 2)]
    text = markdown(summary(flat, {"glue/mrpc": 0.8122}))
    assert "target ≥ 95%): not judged" in text and "not above the constant predictor on glue/mrpc" in text
    assert "| n/a |" in text and "nan" not in text
    # one learnt task (SST-2: source 0.85, student 0.80 -> kept gain (0.80-0.5092)/(0.85-0.5092) = 85.3%) is judged
    mixed = flat + [row("source", "glue/sst2", s, 0.85) for s in (0, 1, 2)] + \
        [row("bortlab", "glue/sst2", s, 0.80) for s in (0, 1, 2)]
    items = summary(mixed, constants)
    mine = next(it for it in items if it["model"] == "bortlab")
    assert mine["kept_gain"] == {"glue/sst2": pytest.approx((0.80 - 0.5092) / (0.85 - 0.5092))}
    text = markdown(items)
    assert "(target ≥ 95%): met" in text and "not above the constant predictor on glue/mrpc (0.8122 vs 0.8122)" in text


def test_latency_measured_on_another_machine_is_not_reused(tmp_path, monkeypatch):
    # latency is a property of the CPU as much as of the model: the same out/ on another box is measured again
    import bortlab.pipeline.report as report
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"latency": {"precisions": ["fp32"], "shapes": [[1, 16]], "threads": 1, "repeats": 1}})
    settings = {"models": {}, "precisions": ["fp32"], "shapes": [[1, 16]], "threads": 1, "repeats": 1,
                "machine": report.machine()}
    rows = [{"key": ["source", "fp32", 1, 16], "ms": 3.0}]
    (tmp_path / "latency.json").write_text(json.dumps({"settings": settings, "rows": rows}))
    assert report.measure_latency(cfg, [], [], {}, tmp_path) == {("source", "fp32", 1, 16): 3.0}
    monkeypatch.setattr(report, "machine", lambda: "Some Other CPU (AVX512, native bf16, with VNNI), torch 2.13.0")
    assert report.measure_latency(cfg, [], [], {}, tmp_path) == {}      # not the cached figures: nothing to measure
