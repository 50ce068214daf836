"""Compare runs offline: `python -m bortlab.report DIR [--out OUTDIR]`.

DIR is one run directory or a Hydra multirun directory; every directory under it holding a `metrics.json`
is a run. Writes `report.csv` (one row per run: its overrides, dev metrics, objective, tuple, parameters,
operations, wall time, steps, task, init) and `report.html`, one self-contained file (sortable table, plots
inlined as PNG data URIs, no network) to read on a laptop, far from the cluster and W&B.
"""
from __future__ import annotations

import argparse
import base64
import csv
import functools
import html
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bortlab.files import write_atomic


def _at(m: dict, dotted: str):
    """metrics.json's value at `params.net` etc.; None where a run (an older or other stage) has none."""
    for k in dotted.split("."):
        m = m.get(k) if isinstance(m, dict) else None
    return m


def _tuple(m: dict):
    t = m.get("tuple")
    return "(" + ", ".join(map(str, t)) + ")" if isinstance(t, list) else t


# (column, how to read it from metrics.json); dev metrics and overrides are added per run set
COST_COLUMNS = [("tuple", _tuple), *((c, lambda m, c=c: _at(m, c)) for c in
                ("params.net", "params.effective", "ops_per_forward_128", "train_seconds", "steps"))]
MAX_METRIC_PANELS = 6


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


def table(runs: list[Run]) -> tuple[list[str], list[list]]:
    """Columns and rows: run, overrides (swept ones first), task, init, objective, dev metrics, costs."""
    swept = swept_keys(runs)
    keys = swept + [k for k in dict.fromkeys(k for r in runs for k in r.overrides) if k not in swept]
    metric_names = list(dict.fromkeys(k for r in runs for k in r.dev))
    fixed = ["task", "init", "objective", *metric_names, *(c for c, _ in COST_COLUMNS)]
    # `task=glue/rte` on the command line and metrics.json's task would share a name: keep both, told apart
    override_cols = [f"{k} (override)" if k in fixed or k == "run" else k for k in keys]
    columns = ["run", *override_cols, *fixed]
    rows = []
    for r in runs:
        m = r.metrics
        rows.append([r.rel, *(r.overrides.get(k) for k in keys), m.get("task"), m.get("init"), m.get("objective"),
                     *(r.dev.get(k) for k in metric_names), *(get(m) for _, get in COST_COLUMNS)])
    return columns, rows


def _cell(v) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def write_csv(path: Path, columns: list[str], rows: list[list]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows([[_cell(v) for v in row] for row in rows])
    return write_atomic(path, buf.getvalue())


# ---- plots --------------------------------------------------------------------------------------------
# ---- html ---------------------------------------------------------------------------------------------
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.dir !== 'asc';
    th.closest('tr').querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.dataset.dir = asc ? 'asc' : 'desc';
    function key(r) { return r.cells[col].dataset.v; }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b), nx = Number(x), ny = Number(y);   // not parseFloat: '2026-12-01/0' is no 2026
      if (x === '' || y === '') return (x === '') - (y === '');          // empty cells last, either way
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y, undefined, {numeric: true});
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""
CSS = """body{font:14px sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee;cursor:pointer;position:sticky;top:0}
td:first-child,th:first-child{text-align:left}th[data-dir=asc]::after{content:" \\25B2"}
th[data-dir=desc]::after{content:" \\25BC"}img{max-width:100%}figure{margin:1em 0}"""


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_html(path: Path, root: Path, columns: list[str], rows: list[list], figures: list[tuple[str, bytes]]) -> Path:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "\n".join('<tr class="run">' + "".join(f'<td data-v="{e(_cell(v))}">{e(_show(v))}</td>' for v in row)
                     + "</tr>" for row in rows)
    figs = "\n".join(f'<figure><img alt="{e(cap)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                     f"<figcaption>{e(cap)}</figcaption></figure>" for cap, png in figures)
    doc = (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>bortlab report: {e(str(root))}</title>'
           f"<style>{CSS}</style></head><body>\n<h1>Runs under {e(str(root))}</h1>\n"
           f"<p>{len(rows)} run(s). Click a column header to sort.</p>\n"
           f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n'
           f"<h2>Plots</h2>\n{figs or '<p>No plots: nothing was swept, and no run has costs or a history.json.</p>'}"
           f"\n<script>{SORT_JS}</script>\n</body></html>\n")
    return write_atomic(path, doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bortlab.report", description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="a run directory or a Hydra multirun directory")
    ap.add_argument("--out", help="where report.csv and report.html go (default: DIR)")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    runs, damaged = find_runs(root) if root.is_dir() else ([], 0)
    if not runs:
        found = f"only damaged metrics.json files ({damaged})" if damaged else "no metrics.json"
        print(f"report: {found} under {root}{'' if root.is_dir() else ' (not a directory)'}. Expected a run "
              f"directory (it holds the metrics.json that `python train.py ...` writes when a run finishes) or a "
              f"Hydra multirun directory (multirun/<date>/<time>) whose job directories hold one; a run that is "
              f"still going or that failed has none yet.", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else root
    columns, rows = table(runs)
    csv_path = write_csv(out / "report.csv", columns, rows)
    from bortlab.report_plots import figures      # matplotlib only when a report is written

    html_path = write_html(out / "report.html", root, columns, rows, figures(runs))
    skipped = f" ({damaged} damaged metrics.json skipped)" if damaged else ""
    print(f"report: {len(runs)} run(s){skipped} -> {csv_path} and {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
