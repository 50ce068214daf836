"""conf/ tied to the tables in the code, so that neither can drift alone:

* every `conf/arch/*.yaml` is a preset of `bortlab.models.arch.PRESETS` (its `arch.name`, equal to the file
  name, with every field equal to the preset's) or says `name: custom`; every preset has its yaml;
* every `conf/task/{glue,superglue,race}/**.yaml` names a task of `bortlab.data.tasks.all_tasks()`, every
  task there has its yaml, and what a yaml repeats agrees with the Task: its fields (today `max_length`,
  which train.py prefers to the Task's) and what its comments say (kind, choices, truncation, diagnostics).

Configs are composed through Hydra (the `compose` fixture), so the values checked are the ones train.py gets.
"""
import dataclasses
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bortlab.data.tasks import Task, all_tasks
from bortlab.models.arch import PRESETS

CONF = Path(__file__).resolve().parents[1] / "conf"
CUSTOM = "custom"          # `arch.name: custom`: a shape of one's own, on purpose not a preset (tracking's word too)
BENCHMARKS = ("glue", "superglue", "race")
ARCH_YAMLS = sorted(p.stem for p in (CONF / "arch").glob("*.yaml"))
TASK_YAMLS = {str(p.relative_to(CONF / "task").with_suffix("")): p
              for b in BENCHMARKS for p in sorted((CONF / "task" / b).rglob("*.yaml"))}


def _plain(value):
    """YAML lists and Python tuples compare equal; nested too."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _table() -> dict[str, Task]:
    """The benchmark tasks of the table (tests may register tasks of their own, e.g. `test/agora_synth`)."""
    return {n: t for n, t in all_tasks().items() if n.split("/")[0] in BENCHMARKS}


# ---- arch ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_has_an_arch_yaml(preset):
    assert preset in ARCH_YAMLS, f"PRESETS[{preset!r}] has no conf/arch/{preset}.yaml: `arch={preset}` would fail"


@pytest.mark.parametrize("name", ARCH_YAMLS)
def test_arch_yaml_is_its_preset_or_says_custom(name, compose):
    from bortlab.models.build import arch_from_cfg

    cfg = compose([f"arch={name}"])
    node = OmegaConf.to_container(cfg.arch, resolve=True)
    declared = node.get("name")
    built = arch_from_cfg(cfg)                   # what train.py builds; a bad field fails here
    if declared == CUSTOM:
        assert name not in PRESETS, f"conf/arch/{name}.yaml says custom but PRESETS has {name!r}"
        return
    assert declared == name, f"conf/arch/{name}.yaml has arch.name={declared!r}: the file name and the name differ"
    assert declared in PRESETS, (f"conf/arch/{name}.yaml names {declared!r}, which is not in PRESETS "
                                 f"({sorted(PRESETS)}): add the preset, or write `name: {CUSTOM}`")
    preset = PRESETS[declared]
    fields = preset.to_dict()
    for key, value in node.items():
        if key == "name":
            continue
        assert key in fields, f"conf/arch/{name}.yaml sets {key!r}, which is not an Arch field"
        assert value == fields[key], f"conf/arch/{name}.yaml: {key}={value!r} but PRESETS[{declared!r}].{key}={fields[key]!r}"
    # and the fields the yaml leaves out: Arch's defaults, which must be the preset's too
    assert built == preset, f"arch={name} builds {built!r}, not PRESETS[{declared!r}] = {preset!r}"


# ---- tasks --------------------------------------------------------------------------------------------
def test_every_task_in_the_table_has_a_yaml_and_every_yaml_a_task():
    table = _table()
    assert table, "the task table is empty"
    missing = sorted(set(table) - set(TASK_YAMLS))
    extra = sorted(set(TASK_YAMLS) - set(table))
    assert not missing, f"tasks without conf/task/<name>.yaml (so `task=<name>` fails): {missing}"
    assert not extra, f"conf/task yamls that name no task of the table: {extra}"


@pytest.mark.parametrize("path", sorted(TASK_YAMLS))
def test_task_yaml_fields_agree_with_the_task(path, compose):
    cfg = compose([f"task={path}"])
    node = OmegaConf.to_container(cfg.task, resolve=True)
    table = _table()
    assert node.get("name") in table, f"conf/task/{path}.yaml: name={node.get('name')!r} is not in the task table"
    assert node["name"] == path, f"conf/task/{path}.yaml names {node['name']!r}: `task={path}` would run another task"
    task = table[node["name"]]
    fields = {f.name for f in dataclasses.fields(Task)}
    for key, value in node.items():
        # train.py reads a task yaml's name and max_length only; anything that is not a Task field is ignored
        assert key in fields, f"conf/task/{path}.yaml sets {key!r}, which is no Task field: nothing would read it"
        assert _plain(value) == _plain(getattr(task, key)), (
            f"conf/task/{path}.yaml: {key}={value!r} but the task table says {getattr(task, key)!r}")
    # what train.py uses when data.max_length is not given
    assert int(cfg.data.max_length or cfg.task.get("max_length") or task.max_length) == task.max_length


@pytest.mark.parametrize("path", sorted(TASK_YAMLS))
def test_task_yaml_comments_agree_with_the_task(path):
    """The comments repeat facts of the table (users read them); each claim that is there must hold."""
    table = _table()
    assert path in table, f"conf/task/{path}.yaml: no task {path!r} in the task table"
    task = table[path]
    text = TASK_YAMLS[path].read_text()
    usage = re.search(r"^#\s*python train\.py task=(\S+)", text, re.M)
    assert usage and usage.group(1) == path, f"conf/task/{path}.yaml: its usage line names another task"
    diag = re.search(r"diagnostic: no training data; predicted by a (\S+) run", text)
    assert bool(diag) == (task.predict_with is not None), f"{path}: diagnostic note vs predict_with={task.predict_with}"
    if diag:
        assert diag.group(1) == task.predict_with and "train" not in task.splits, path
    way = re.search(r"(\d+)-way multiple choice", text)
    assert bool(way) == (task.kind == "multiple_choice"), f"{path}: the comment and kind={task.kind!r} differ"
    if way:
        assert int(way.group(1)) == task.num_choices, f"{path}: {way.group(0)} but num_choices={task.num_choices}"
    if "(classification" in text:
        assert task.kind == "classification", path
    if "longest-first" in text:
        assert task.truncation == "longest_first", f"{path}: the comment says longest-first, truncation={task.truncation!r}"
    if "the passage is truncated" in text:
        assert task.truncation == "only_first", f"{path}: the comment says passage-only, truncation={task.truncation!r}"
