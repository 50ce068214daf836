"""Leaving one machine: hydra-submitit-launcher. `hydra/launcher=submitit_local` runs each job as a submitit job in
a local process, the same code path as `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml) on a cluster."""
import csv
import json

TINY = ["trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "logger=none", "data.batch_size=8",
        "task.max_length=64"]


def test_a_multirun_through_submitit_local(train, tmp_path, data_root):
    sweep = tmp_path / "sweep"
    train("-m", "hydra/launcher=submitit_local", "arch=tiny", "task=glue/rte", f"data.root={data_root}",
          "trainer.max_steps=2", "predict=false", "seed=0,1", f"hydra.sweep.dir={sweep}", *TINY)
    runs = sorted(sweep.glob("[0-9]/metrics.json"))
    assert len(runs) == 2 and {json.loads(r.read_text())["steps"] for r in runs} == {2}
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))      # submitit ran them, not the basic launcher


def test_an_fptas_sweep_through_submitit_local_extracts_from_the_source_and_resumes(train, tmp_path, data_root):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=fptas", "hydra/launcher=submitit_local", "search=minilm_small", "task=glue/rte",
            f"data.root={data_root}", "hydra.sweeper.steps=2", "hydra.sweeper.epsilon=2.0", "hydra.sweeper.wandb=false",
            f"hydra.sweep.dir={sweep}", *TINY]
    p = train(*args)          # no model.init: sub-architectures of MiniLM inherit its weights
    rows = [r for r in csv.DictReader(open(sweep / "candidates.csv")) if r["status"] == "evaluated"]
    jobs = [json.loads(m.read_text()) for m in sweep.glob("*/metrics.json")]
    assert rows and len(jobs) == len(rows)
    assert {j["init"] for j in jobs} == {"extract"} and {j["steps"] for j in jobs} == {2}
    assert not list(sweep.glob("*/submission"))                      # candidates do not predict the test split
    assert "pre-flight" in p.stdout + p.stderr
    p = train(*args)          # the same sweep again: every evaluation is on record
    assert "(0 launched now)" in p.stdout + p.stderr


def test_the_slurm_launcher_config_composes_with_the_documented_settings(compose):
    cfg = compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=2",
                   "hydra.launcher.tasks_per_node=2"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 2, 2)
    assert launcher.timeout_min > 0 and launcher.mem_gb > 0
