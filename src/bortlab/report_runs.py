"""The runs under a directory, as `python -m bortlab.report` reads them: each directory holding a metrics.json,
with its Hydra overrides and its learning curves (history.json); damaged files are skipped with a warning."""
from __future__ import annotations

import functools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path


def metric_at(m: dict, dotted: str):
    """metrics.json's value at `params.net` etc.; None where a run (an older or other stage) has none."""
    for k in dotted.split("."):
        m = m.get(k) if isinstance(m, dict) else None
    return m


@dataclass
class Run:
    rel: str                       # the run directory, relative to DIR ("." when DIR is the run)
    metrics: dict
    overrides: dict = field(default_factory=dict)
    history: dict | None = None    # history.json of bortlab.curves.Curves, when the run wrote one

    @property
    def dev(self) -> dict:
        # fine-tuning keeps its final dev scores under "dev", pre-training its held-out losses under "heldout"
        d = self.metrics.get("dev")
        d = d if isinstance(d, dict) else self.metrics.get("heldout")
        return d if isinstance(d, dict) else {}


def _natural(s: str) -> list:
    """Multirun jobs 0, 1, ..., 10 in that order, not 0, 1, 10, 2."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _warn(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr)


def _read_json(path: Path, what: str) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        _warn(f"skipping {path}: {what} is damaged ({type(e).__name__}: {e})")
        return None
    if not isinstance(data, dict):
        _warn(f"skipping {path}: {what} holds a {type(data).__name__}, not an object")
        return None
    return data


@functools.lru_cache(maxsize=1)
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _override(item: str) -> tuple[str, str] | None:
    """(key, value) of one override in Hydra's own spelling of the value: a single run keeps what was typed
    (`optim.lr=1e-4`, `predict=false`), a multirun job what Hydra re-wrote (`0.0001`, `False`); both must land
    on the same value. None for a deletion (`~key`), which has no value to tabulate."""
    from hydra.errors import HydraException

    try:
        (o,) = _parser().parse_overrides([item])
    except HydraException:
        key, eq, value = item.partition("=")
        return (key.lstrip("+~"), value) if eq and not key.startswith("~") else None
    if o.is_delete():
        return None
    return o.key_or_group + (f"@{o.package}" if o.package else ""), o.get_value_element_as_str()


def read_overrides(run_dir: Path) -> dict[str, str]:
    """`.hydra/overrides.yaml` (a YAML list of `key=value`) as {key: value}; `+`/`++` prefixes dropped."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    import yaml

    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as e:
        _warn(f"ignoring {path}: {e}")
        return {}
    return dict(kv for kv in map(_override, map(str, items if isinstance(items, list) else [])) if kv)


def find_runs(root: Path) -> tuple[list[Run], int]:
    """Every readable run under `root` (or `root` itself), in natural order, and how many were damaged."""
    runs, damaged = [], 0
    for d, dirs, files in os.walk(root):               # os.walk: no following links into other trees
        dirs[:] = sorted(x for x in dirs if x not in (".hydra", "checkpoints", "wandb"))
        if "metrics.json" not in files:
            continue
        d = Path(d)
        metrics = _read_json(d / "metrics.json", "metrics.json")
        if metrics is None:
            damaged += 1
            continue
        history = _read_json(d / "history.json", "history.json") if (d / "history.json").exists() else None
        if history is not None and not all(isinstance(history.get(k, []), list) for k in ("train", "val")):
            _warn(f"skipping {d / 'history.json'}: not the train/val lists that bortlab.curves writes")
            history = None
        runs.append(Run(d.relative_to(root).as_posix(), metrics, read_overrides(d), history))
    return sorted(runs, key=lambda r: _natural(r.rel)), damaged


def swept_keys(runs: list[Run]) -> list[str]:
    """Override keys with more than one value among the runs that set them (a key only some runs set, at one
    value, would give a plot of one point)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    return [k for k in keys if len({r.overrides[k] for r in runs if k in r.overrides}) > 1]
