"""train.py end to end: the real configs composed, tiny runs on real RTE, multirun, errors."""
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "data.batch_size=8", "data.eval_batch_size=32",
        "trainer.enable_progress_bar=false", "task.max_length=64"]


def test_every_config_composes(compose):
    groups = {"arch": sorted(p.stem for p in (CONF / "arch").glob("*.yaml")),
              "task": sorted(str(p.relative_to(CONF / "task").with_suffix("")) for p in (CONF / "task").rglob("*.yaml"))}
    assert {"bort", "bort_paper", "bert_base", "bert_large", "minilm", "tiny"} <= set(groups["arch"])
    assert {f"glue/{t}" for t in "cola sst2 mrpc stsb qqp mnli qnli rte wnli ax".split()} <= set(groups["task"])
    from bortlab.data import get_task
    from bortlab.models.build import arch_from_cfg

    for a in groups["arch"]:
        cfg = compose([f"arch={a}"])
        assert arch_from_cfg(cfg).tuple == (cfg.arch.depth, cfg.arch.heads, cfg.arch.hidden, cfg.arch.intermediate)
    for t in groups["task"]:
        cfg = compose([f"task={t}"])
        if t.startswith("pretrain/"):   # the pre-training stage has no row in the task table
            continue
        assert get_task(cfg.task.name).name == t


def test_every_experiment_lands_its_settings_at_the_top_level(compose):
    """`# @package _global_` and the `override /group:` defaults: without them an experiment's keys would sit
    under `experiment.` and train.py would silently run the defaults."""
    experiments = sorted((CONF / "experiment").glob("*.yaml"))
    assert {"minilm_rte", "minilm_multirc"} <= {p.stem for p in experiments}
    for path in experiments:
        cfg = compose([f"experiment={path.stem}"])
        own = OmegaConf.load(path)
        for entry in own.pop("defaults"):
            (group, choice), = entry.items()
            group = group.removeprefix("override /")
            file = CONF / group / f"{choice}.yaml"
            option = OmegaConf.load(file)
            if file.read_text().startswith("# @package _global_"):      # arch presets: `arch:` inside
                option = option.get(group, {})
            if "name" in option:
                assert OmegaConf.select(cfg, f"{group}.name") == choice, (path.name, group)
            else:       # an option without a name (callbacks=none): its values are the group's
                assert OmegaConf.to_container(OmegaConf.merge(cfg[group], option)) == \
                    OmegaConf.to_container(cfg[group]), (path.name, group)
        # every value the file sets is already in the composed config, at any depth
        assert OmegaConf.to_container(OmegaConf.merge(cfg, own)) == OmegaConf.to_container(cfg), path.name


def test_tiny_run_on_real_rte_writes_metrics_and_submission(tmp_path, compose, data_root):
    from bortlab.run import run

    cfg = compose(["arch=tiny", "task=glue/rte", f"data.root={data_root / 'glue'}", f"+output_dir={tmp_path}", *FAST])
    objective = run(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= objective <= 1.0 and m["objective"] == pytest.approx(objective)
    assert m["objective"] == pytest.approx(1 - m["dev"]["val/accuracy"])
    assert m["tuple"] == [2, 2, 128, 512] and m["steps"] == 3
    assert m["params"]["net"] > m["params"]["effective"] > 0
    sub = (tmp_path / "submission" / "RTE.tsv").read_text().splitlines()
    assert sub[0].split("\t") == ["index", "prediction"] and len(sub) == 3001
    assert {line.split("\t")[1] for line in sub[1:]} <= {"entailment", "not_entailment"}
    assert (tmp_path / "checkpoints" / "best.ckpt").exists()
    # the files a run writes get the umask's mode, like any other file (mkstemp's 0600 hid submissions)
    umask = os.umask(0)
    os.umask(umask)
    for f in (tmp_path / "submission" / "RTE.tsv", tmp_path / "metrics.json"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_minilm_pretrained_few_steps(tmp_path, compose, data_root, minilm_dir):
    from bortlab.run import run

    cfg = compose(["arch=minilm", "task=glue/mrpc", f"data.root={data_root}", f"+output_dir={tmp_path}",
                       "predict=false", "callbacks=none", *FAST])
    objective = run(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["init"] == "pretrained" and m["tuple"] == [6, 12, 384, 1536]
    assert {"val/f1", "val/accuracy"} <= set(m["dev"]) and objective == pytest.approx(1 - m["dev"]["val/f1"])


def test_multirun_over_tasks_with_wandb_offline(tmp_path, train, data_root):
    train("-m", "arch=tiny", "task=glue/rte,glue/mrpc", "optim.lr=1e-4", "logger=wandb", "predict=false",
          "callbacks=none", f"hydra.sweep.dir={tmp_path}/sweep", *FAST, timeout=600, env={"WANDB_MODE": "offline"})
    jobs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [json.loads(j.read_text())["task"] for j in jobs] == ["glue/rte", "glue/mrpc"]
    runs = list((tmp_path / "sweep").glob("*/wandb/offline-run-*"))
    assert len(runs) == 2


@pytest.mark.parametrize("args, expected", [
    (["arch=tiny", "arch.heads=5"], "heads must divide hidden"),
    (["arch=bort", "task=glue/rte"], "model.init=scratch"),
    (["arch=tiny", "task=glue/rte", "data.root=EMPTY"], "RTE"),
    (["arch=tiny", "task=glue/rtee"], "Unknown task 'glue/rtee'. Known: glue/ax"),
    (["-m", "arch=tiny", "task=glue/rte,superglue/cbb"], "Unknown task 'superglue/cbb'"),
    (["arch=tiny", "task=glue/rte", "model.pooling=max"], "model.pooling='max' is not one of"),
    (["arch=tiny", "task=glue/rte", "data.passage_fit=middle"], "data.passage_fit='middle' is not one of cut, select"),
])
def test_bad_input_is_one_clear_message(tmp_path, args, expected, train):
    (tmp_path / "empty").mkdir()
    args = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
    r = train(*args, f"hydra.run.dir={tmp_path}/run", *FAST, expect=2, timeout=300)
    assert expected in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_search_group_composes_as_the_issue_writes_it(compose):
    """`search=minilm` (no +) works because conf/config.yaml lists `- search: null`."""
    from bortlab.search.space import SearchSpace

    def size(name):
        space = OmegaConf.to_container(compose([f"search={name}"]).search)
        return len(list(SearchSpace.from_config(space).candidates()))

    sizes = {name: size(name)
             for name in ("minilm", "minilm_small")}
    assert sizes == {"minilm": 6 * 4 * 3 * 4, "minilm_small": 3 * 2 * 2 * 2}
    assert "search" not in compose([])


def test_csv_logger_keeps_an_earlier_log_and_does_not_warn_it_away(tmp_path, recwarn, compose):
    from bortlab.models.build import arch_from_cfg
    from bortlab.tracking import build_logger

    csv = tmp_path / "csv"
    csv.mkdir()
    (csv / "metrics.csv").write_text("step,val/loss\n0,1.0\n")
    (csv / "hparams.yaml").write_text("{}\n")
    cfg = compose(["arch=tiny", "logger=csv"])
    lg = build_logger(cfg, arch_from_cfg(cfg), tmp_path)
    lg.log_metrics({"val/loss": 0.5}, step=1)
    lg.save()
    assert (csv / "metrics.1.csv").read_text() == "step,val/loss\n0,1.0\n"
    assert "0.5" in (csv / "metrics.csv").read_text()
    assert not [w for w in recwarn if "will be deleted" in str(w.message)]


def test_last_ckpt_holds_the_end_of_the_epoch_when_dev_checks_do_not_divide_it(tmp_path, compose, data_root):
    """With trainer.val_check_interval=2 and 5 batches an epoch, the last dev check is at step 4: last.ckpt
    must still hold step 5, so that resume=auto does not train the epoch's last batch again; and it must follow
    training even when the dev metric does not improve (Lightning's save_last only follows the best)."""
    import torch

    from bortlab.run import run

    args = ["arch=tiny", "task=glue/rte", f"data.root={data_root}", f"+output_dir={tmp_path}", "predict=false",
            "logger=none", *FAST, "trainer.limit_train_batches=5", "trainer.val_check_interval=2"]

    def load(name):
        return torch.load(tmp_path / "checkpoints" / name, map_location="cpu", weights_only=False)

    run(compose(args))
    last, best = load("last.ckpt"), load("best.ckpt")
    assert last["global_step"] == 5 and best["global_step"] in (2, 4)
    # best.ckpt is for scoring and export: the weights only (MiniLM runs kept 545 MB of checkpoints)
    assert last["optimizer_states"] and not best.get("optimizer_states")
    assert best["state_dict"].keys() == last["state_dict"].keys()
    # resume=auto with a second epoch continues after step 5: five more steps, not six
    run(compose([*args, "trainer.max_epochs=2", "resume=auto"]))
    last = load("last.ckpt")
    assert (last["global_step"], last["epoch"]) == (10, 1)
