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
import html
import io
import sys
from pathlib import Path

from bortlab.files import write_atomic
from bortlab.report_plots import figures
from bortlab.report_runs import Run, metric_at, find_runs, swept_keys


def _tuple(m: dict):
    t = m.get("tuple")
    return "(" + ", ".join(map(str, t)) + ")" if isinstance(t, list) else t


# (column, how to read it from metrics.json); dev metrics and overrides are added per run set
COST_COLUMNS = [("tuple", _tuple), *((c, lambda m, c=c: metric_at(m, c)) for c in
                ("params.net", "params.effective", "ops_per_forward_128", "train_seconds", "steps"))]


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
    html_path = write_html(out / "report.html", root, columns, rows, figures(runs))
    skipped = f" ({damaged} damaged metrics.json skipped)" if damaged else ""
    print(f"report: {len(runs)} run(s){skipped} -> {csv_path} and {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
