"""The shape of the house: no module under `bortlab` imports one that imports it back (lazy imports inside
functions count: they close a cycle just the same), and each shared mechanism has one implementation."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """bortlab module -> the bortlab modules it imports anywhere in its body (read with ast, nothing run)."""
    modules = {_module_name(p): p for p in (SRC / "bortlab").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in modules and t != name)
        # a package's __init__ is not a dependency of its own modules' siblings in the cycle sense
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_bortlab():
    graph = _imports()
    assert "bortlab.stage" in graph and "bortlab.finetune.run" in graph["bortlab.run"]
    assert _cycles(graph) == []


def test_run_is_a_dispatcher_and_both_stages_live_in_the_stage_house():
    graph = _imports()
    assert graph["bortlab.run"] <= {"bortlab.checks", "bortlab.finetune.run", "bortlab.pretrain.run"}
    for stage in ("bortlab.finetune.run", "bortlab.pretrain.run"):
        assert "bortlab.stage" in graph[stage]
        assert "bortlab.run" not in graph[stage]
    assert not any("bortlab.run" in deps for m, deps in graph.items() if m != "bortlab")


def test_one_optimiser_for_every_stage():
    # the LightningModules take their optimiser from bortlab.optim; neither builds AdamW itself
    for path in (SRC / "bortlab").rglob("*.py"):
        if path.name != "optim.py":
            assert "torch.optim.AdamW(" not in path.read_text(encoding="utf-8"), path


class _Trainer:
    def __init__(self, estimate):
        self.estimated_stepping_batches = estimate


@pytest.mark.parametrize("estimate,steps", [(math.inf, 1), (0, 1), (120, 120)])
def test_schedule_length_survives_an_endless_run(estimate, steps):
    # trainer.max_epochs=-1 without max_steps: Lightning estimates inf steps; int(inf) raised OverflowError
    import torch

    from bortlab.optim import adamw_with_schedule, total_steps

    assert total_steps(_Trainer(estimate)) == steps
    model = torch.nn.Linear(4, 2)
    out = adamw_with_schedule(model, _Trainer(estimate), lr=1e-3, weight_decay=0.01, warmup_ratio=0.1,
                              warmup_steps=None, betas=(0.9, 0.999), eps=1e-8)
    groups = out["optimizer"].param_groups
    # BERT's rule, checked by hand: the 2-D weight decays, the bias does not
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert groups[0]["params"][0] is model.weight and groups[1]["params"][0] is model.bias
    sched = out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(out["optimizer"].param_groups[0]["lr"])
        out["optimizer"].step()
        sched.step()
    warm = int(0.1 * steps)
    if steps > 1:   # linear warm-up to 1e-3 over `warm` steps, then linear decay to 0 at `steps`
        assert lrs[warm] == pytest.approx(1e-3)
        assert lrs[-1] == pytest.approx(1e-3 * (steps - (steps - 1)) / (steps - warm))
