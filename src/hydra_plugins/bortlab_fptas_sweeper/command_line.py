"""The `fptas` sweeper's reading of the command line: the candidate architectures (a search space, `arch.*`
sweeps, `arch=` choices), Θ (the other sweeps), the fixed overrides, and the maximum point T. A mixin of
FPTASSweeper: it reads the sweeper's settings (`params`, `space`, `arch_key`, `thetas`, `source`) and Hydra's
context, and launches nothing.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf


def to_plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if OmegaConf.is_config(x) else x


def render(value: Any) -> str:
    """A Python value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{render(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if isinstance(value, str) and any(ch in text for ch in " ,=[]{}()'\"\\:$"):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


class CommandLineSpace:
    # the command line -> candidates, Θ, fixed overrides ------------------------------------------
    def _parse(self, arguments: List[str]):
        from bortlab.search import SearchError

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        fixed: Dict[str, str] = {}                 # key element -> override (last one wins)
        grid: Dict[str, tuple] = {}                # arch field -> values from the command line
        arch_choices: List[str] = []
        theta_dims: Dict[str, List[str]] = {}
        prefix = self.arch_key + "."
        for o in parsed:
            key = o.key_or_group
            if o.is_sweep_override() and not o.is_discrete_sweep():
                raise SearchError(f"The fptas sweeper enumerates discrete values; {o.input_line!r} is a "
                                  f"{o.value_type.name} sweep. Use a choice (a,b,c) or range(start,stop,step).")
            if key.startswith(prefix):  # an architecture dimension; a plain value still composes the base
                grid[key[len(prefix):]] = tuple(o.sweep_iterator()) if o.is_sweep_override() else (o.value(),)
                if o.is_sweep_override():
                    continue
            elif key == self.arch_key and o.is_sweep_override():
                arch_choices = list(o.sweep_string_iterator())
                continue
            elif o.is_sweep_override():
                theta_dims[o.get_key_element()] = list(o.sweep_string_iterator())
                continue
            fixed[o.get_key_element()] = f"{o.get_key_element()}={o.get_value_element_as_str()}"
        return fixed, grid, arch_choices, theta_dims

    def _space_config(self, fixed: Dict[str, str]) -> dict:
        """hydra.sweeper.space as a mapping; as a name, the `search` group option of that name (so
        hydra.sweeper.space=minilm works whether or not the app's defaults list has a `search` entry);
        unset, the job config's `search` node."""
        if isinstance(self.space_cfg, str):
            from hydra.errors import ConfigCompositionException

            rest = [v for k, v in fixed.items() if k.lstrip("+~") != self.space_key]
            for prefix in ("", "+"):  # `+` appends the group when the defaults list does not name it
                try:
                    cfg = self.hydra_context.config_loader.load_sweep_config(
                        self.config, rest + [f"{prefix}{self.space_key}={self.space_cfg}"])
                    return dict(to_plain(cfg[self.space_key]))
                except ConfigCompositionException:
                    if prefix:
                        raise
        if self.space_cfg is not None:
            return dict(self.space_cfg)
        node = OmegaConf.select(self.config, self.space_key, default=None)
        return dict(to_plain(node)) if node is not None else {}

    def _base_arch(self, fixed: Dict[str, str], choice: Optional[str]):
        cfg = self.config
        if choice is not None:  # compose the job config with that arch group choice
            overrides = [v for k, v in fixed.items() if k.lstrip("+~") != self.arch_key] + [f"{self.arch_key}={choice}"]
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        node = OmegaConf.select(cfg, self.arch_key, default=None)
        return dict(to_plain(node)) if node is not None else None  # may be invalid alone (arch.heads=3): the grid fixes it

    def _candidates(self, fixed, grid, arch_choices):
        """(arch -> arch group choice or None) over every base, and the SearchSpace of the first base."""
        from bortlab.search import SearchError, SearchSpace

        space_cfg = self._space_config(fixed)
        if not space_cfg and not grid:
            raise SearchError(
                f"The fptas sweeper has no search space: select one (search=bort, search=minilm: the job config's "
                f"`{self.space_key}` node), set hydra.sweeper.space, or sweep {self.arch_key}.* keys "
                f"({self.arch_key}.depth=2,4,6 {self.arch_key}.hidden=256,512 ...).")
        found: Dict[Any, Optional[str]] = {}
        spaces = []
        for choice in arch_choices or [None]:
            space = SearchSpace.from_config(space_cfg, base=self._base_arch(fixed, choice))
            space = SearchSpace(grid={**space.grid, **grid}, base=space.base,
                                fixed={k: v for k, v in space.fixed.items() if k not in grid},
                                constraints=space.constraints, source=space.source)
            spaces.append(space)
            for arch in space.candidates():
                found.setdefault(arch, choice)
        return found, spaces[0]

    def _thetas(self, theta_dims: Dict[str, List[str]]) -> List[Dict[str, Any]]:
        base = self.thetas or [{}]
        combos = [dict(zip(theta_dims, values)) for values in itertools.product(*theta_dims.values())]
        return [{**t, **c} for t in base for c in combos]

    def _source_arch(self, space):
        """The maximum point T: hydra.sweeper.source, else the space's `source`; a preset name, or Arch fields
        applied to the job's arch; None = max p and max i over the space."""
        from bortlab.models.arch import Arch

        source = self.source if self.source is not None else space.source
        if source is None or isinstance(source, Arch):
            return source
        if isinstance(source, str):
            return Arch.preset(source)
        return Arch(**{**space.base_fields, **source})
