"""Issue 19's protocol from config keys alone, at a tiny budget on real RTE rows: a teacher trained on train − R
(data.use=rest), its final checkpoint (checkpoint=last) as a distillation teacher (distill.*: arm A4) and as
Agora's labeller with a balanced hold-out H drawn from R beside S (agora.holdout_size)."""
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bortlab.agora.labellers import load_labeller
from bortlab.config import SetupError
from bortlab.data.datamodule import SPARE, TaskDataModule
from bortlab.data.subsample import Selection
from bortlab.data.tasks import get_task
from bortlab.finetune.distill import POOL, attach_teacher, distill_options


RESERVE = ["data.reserve=2000", "data.reserve_seed=0"]
TINY = ["arch=tiny", "task=glue/rte", "task.max_length=32", "trainer.limit_val_batches=1", "predict=false",
        "logger=none", "trainer.enable_progress_bar=false", "data.batch_size=8"]


def _run(compose, out, overrides):
    from bortlab.run import run

    cfg = compose([*TINY, *overrides, f"+output_dir={out}"])
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")      # what Hydra writes next to every run
    run(cfg)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_root):
    from hydra import compose as hydra_compose, initialize_config_dir

    from bortlab.config import register_resolvers

    register_resolvers()
    out = tmp_path_factory.mktemp("teacher")

    def compose(overrides):
        with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))

    m = _run(compose, out, [f"data.root={data_root}", "trainer.max_steps=2", *RESERVE, "data.use=rest"])
    assert m["train_rows"] == 2490 - 2000                   # it never saw the reserve
    # last.ckpt holds the final weights, also when max_steps stops the run mid-epoch
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    return out


def test_teacher_soft_targets_and_an_unlabelled_pool_from_the_reserve(teacher, tokenizer, data_root):
    task = get_task("glue/rte")
    sel = Selection(reserve=2000, reserve_seed=0, use="reserve", subset=40, subset_seed=1)
    dm = TaskDataModule(task, tokenizer, root=str(data_root), max_length=32, selection=sel)
    opts = {"teacher": str(teacher), "checkpoint": "last", "labels": None, "alpha": 0.5, "temperature": 2.0,
            "pool_size": 20}
    info = attach_teacher(opts, dm, seed=0)
    ref = load_labeller({"path": str(teacher / "checkpoints" / "last.ckpt")}, task)      # the same weights
    s_rows = dm.rows["train"][:40]
    torch.testing.assert_close(torch.tensor([f["soft_label"] for f in dm.features["train"][:40]]), ref.probs(s_rows))
    assert all(f["soft_weight"] == 0.5 for f in dm.features["train"][:40])
    pool = dm.rows["train"][40:]
    assert len(pool) == 20 == len(dm.rows[POOL]) and info["train_rows"] == 60
    probs = ref.probs(pool)
    assert [task.target(r) for r in pool] == probs.argmax(-1).tolist()               # the teacher's labels...
    assert all(r["soft_weight"] == 1.0 for r in pool)                                  # ...trained by KL alone
    assert not {r["idx"] for r in pool} & {r["idx"] for r in s_rows}
    assert len(dm.rows[SPARE]) == 2000 - 40 - 20
    assert isinstance(info["teacher_dev_accuracy"], float)
    # it trained on train − R and the student's rows come from R: its Agora-dev accuracy is not optimistic
    assert ref.saw_train_of(task) and not ref.saw_train_of(task, sel)
    assert ref.saw_train_of(task, Selection(reserve=2000, reserve_seed=1, use="reserve"))   # another R


def test_distillation_and_agora_runs_from_config_keys(teacher, compose, data_root, tmp_path):
    student = [f"data.root={data_root}", *RESERVE, "data.use=reserve", "data.train_subset=40",
               "trainer.max_steps=4"]
    m = _run(compose, tmp_path / "a4", [*student, f"distill.teacher={teacher}", "distill.pool_size=20"])
    assert m["distill"]["train_rows"] == 60 and m["distill"]["temperature"] == 2.0 and m["train_rows"] == 60
    m = _run(compose, tmp_path / "a2", [*student, "callbacks=agora", f"agora.labeller.path={teacher}",
                                        "agora.labeller.checkpoint=last", "agora.holdout_size=20", "agora.at_steps=[2]",
                                        "agora.points_per_round=10", "agora.balance=true", "agora.soft_labels=true",
                                        "agora.transform.name=dropswap", "agora.k=2"])
    log = [json.loads(x) for x in (tmp_path / "a2" / "agora" / "rounds.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [2] and log[0]["dev_rows"] == 20 and log[0]["kept"] == 10
    assert m["train_rows"] == 50 and m["steps"] == 4               # S keeps its 40 rows; H came from the spare


def test_bad_distill_options(compose):
    with pytest.raises(SetupError, match="without distill.teacher"):
        distill_options(compose(["distill.pool_size=5"]))
    with pytest.raises(SetupError, match="distill.alpha=1.5"):
        distill_options(compose(["distill.teacher=x", "distill.alpha=1.5"]))
    assert distill_options(compose([])) is None
