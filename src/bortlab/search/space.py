"""The search space Ξ: a grid over ⟨D, A, H, I⟩ (and optionally head_dim) around a base `Arch`, filtered by
constraints. Pure Python (no Hydra): the sweeper turns its config into a `SearchSpace` and asks for
`candidates()`.

A grid point that is not a valid `Arch` (H % A != 0 without an explicit head_dim) is dropped silently: that
is how the paper's 4 x 6 x 3 x 5 = 360 grid becomes 300 architectures. Extra constraints are small Python
expressions over the Arch fields (`"intermediate >= hidden // 2"`), parsed with `ast` and evaluated on a
whitelist of node types, so a config file cannot run arbitrary code.
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import operator
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bortlab.models.arch import Arch, ArchError

GRID_FIELDS = ("depth", "heads", "hidden", "intermediate", "head_dim")
ARCH_FIELDS = tuple(f.name for f in dataclasses.fields(Arch))
# keys a search config may carry besides Arch fields
_META_KEYS = ("constraints", "source", "name", "_target_", "description")


class SearchError(ValueError):
    """Bad input to the search (empty space, bad epsilon, a job that returned no number...); the message says
    what was wrong and how to fix it."""


@dataclass(frozen=True)
class SearchSpace:
    """`grid` maps Arch fields to the values to try; every other field comes from `base`. `fixed` are fields
    set to one value for the whole space (they are part of the space, so the sweeper passes them to jobs)."""

    grid: Mapping[str, tuple]
    base: Arch | Mapping[str, Any] | None = None  # a Mapping may be an invalid tuple: the grid replaces fields
    fixed: Mapping[str, Any] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    source: Any = None  # the maximum point T: None (max over the space), a preset name or an Arch

    def __post_init__(self) -> None:
        unknown = sorted((set(self.grid) | set(self.fixed)) - set(ARCH_FIELDS))
        if unknown:
            raise SearchError(f"Unknown architecture field(s) {unknown} in the search space; valid fields are {list(ARCH_FIELDS)}.")
        for name, values in self.grid.items():
            if len(values) == 0:
                raise SearchError(f"Search space dimension {name!r} has no values; give at least one.")
        missing = [f for f in GRID_FIELDS[:4] if f not in self.grid and f not in self.fixed]
        if self.base is None and missing:
            raise SearchError(
                f"The search space sets no value for {missing} and has no base architecture to take them from. "
                "Give those dimensions in the search config (e.g. depth: [2, 4]) or compose an `arch`."
            )
        if self.base is not None and not isinstance(self.base, Arch):
            base = {k: v for k, v in dict(self.base).items() if k not in ("name", "_target_")}
            unknown = sorted(set(base) - set(ARCH_FIELDS))
            if unknown:
                raise SearchError(f"The base architecture has unknown field(s) {unknown}; valid fields are {list(ARCH_FIELDS)}.")
            object.__setattr__(self, "base", base)
        object.__setattr__(self, "_checks", tuple(_compile(c) for c in self.constraints))

    @property
    def base_fields(self) -> dict[str, Any]:
        if self.base is None:
            return {}
        return self.base.to_dict() if isinstance(self.base, Arch) else dict(self.base)

    @property
    def fields(self) -> tuple[str, ...]:
        """The Arch fields this space controls (grid dimensions first, then fixed values)."""
        return tuple(self.grid) + tuple(f for f in self.fixed if f not in self.grid)

    @property
    def grid_size(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def candidates(self) -> list[Arch]:
        """Every valid grid point satisfying the constraints, in grid order, without duplicates."""
        names = list(self.grid)
        base = self.base_fields
        seen: dict[Arch, None] = {}
        invalid = 0
        for combo in itertools.product(*(self.grid[n] for n in names)):
            try:
                arch = Arch(**{**base, **self.fixed, **dict(zip(names, combo))})
            except ArchError:
                invalid += 1  # e.g. H % A != 0 without head_dim: not an architecture at all
                continue
            if all(check(arch) for check in self._checks):
                seen.setdefault(arch, None)
        if not seen:
            dims = ", ".join(f"{n}={list(v)}" for n, v in self.grid.items())
            raise SearchError(
                f"The search space is empty: none of the {self.grid_size} grid points ({dims}) is a valid "
                f"architecture satisfying the constraints {list(self.constraints)} ({invalid} were invalid "
                "tuples, e.g. hidden not divisible by heads). Widen the grid, relax the constraints or set head_dim."
            )
        return list(seen)

    def overrides(self, arch: Arch, prefix: str = "arch.") -> dict[str, Any]:
        """The `arch.*` overrides that make a job build `arch` (only the fields this space controls)."""
        return {f"{prefix}{name}": getattr(arch, name) for name in self.fields}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], base: Arch | None = None) -> "SearchSpace":
        """Build from a mapping such as `conf/search/bort.yaml`: each Arch field is a list (a grid
        dimension) or a scalar (fixed); `constraints` is a list of expressions; `source` the maximum point."""
        cfg = dict(cfg)
        unknown = sorted(set(cfg) - set(ARCH_FIELDS) - set(_META_KEYS))
        if unknown:
            raise SearchError(
                f"Unknown key(s) {unknown} in the search space config; use Arch fields {list(ARCH_FIELDS)} "
                f"(a list = a grid dimension, a scalar = fixed) and {list(_META_KEYS[:2])}."
            )
        grid, fixed = {}, {}
        for name in ARCH_FIELDS:
            if name not in cfg:
                continue
            value = cfg[name]
            if isinstance(value, (list, tuple)):
                grid[name] = tuple(dict.fromkeys(value))  # keep order, drop repeats
            elif value is None and name != "head_dim":
                continue  # `depth: null` = not searched, take it from the base
            else:
                fixed[name] = value
        constraints = cfg.get("constraints") or ()
        if isinstance(constraints, str):
            constraints = (constraints,)
        return cls(grid=grid, base=base, fixed=fixed, constraints=tuple(constraints), source=cfg.get("source"))


# ---- constraint expressions ----------------------------------------------------------------------
_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.USub: operator.neg, ast.Not: operator.not_,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_NAMES = set(ARCH_FIELDS) | {"dim_head", "attn_width"}


def _compile(expr: str):
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise SearchError(f"Search constraint {expr!r} is not a valid expression: {exc.msg}.") from None

    def ev(node, arch):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in _NAMES:
                raise SearchError(f"Search constraint {expr!r} uses unknown name {node.id!r}; use {sorted(_NAMES)}.")
            return getattr(arch, node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left, arch), ev(node.right, arch))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand, arch))
        if isinstance(node, ast.BoolOp):
            values = (ev(v, arch) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare) and all(type(op) in _OPS for op in node.ops):
            left = ev(node.left, arch)
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp, arch)
                if not _OPS[type(op)](left, right):
                    return False
                left = right
            return True
        raise SearchError(
            f"Search constraint {expr!r} uses an unsupported construct ({type(node).__name__}); only arithmetic, "
            "comparisons, and/or/not over the Arch fields are allowed."
        )

    def check(arch: Arch) -> bool:
        try:
            return bool(ev(tree, arch))
        except (TypeError, ZeroDivisionError) as exc:
            raise SearchError(f"Search constraint {expr!r} failed on {arch}: {exc}.") from None

    for node in ast.walk(tree):  # unknown names fail now, not on the first candidate
        if isinstance(node, ast.Name) and node.id not in _NAMES:
            raise SearchError(f"Search constraint {expr!r} uses unknown name {node.id!r}; use {sorted(_NAMES)}.")
    return check


def as_grid(values: Sequence[Any] | Any) -> tuple:
    """A scalar or a sequence as a tuple of grid values."""
    return tuple(values) if isinstance(values, (list, tuple)) else (values,)
