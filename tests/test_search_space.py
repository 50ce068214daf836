"""SearchSpace: grids, constraints, the paper's and MiniLM's spaces, clear errors."""
import itertools
from pathlib import Path

import pytest
import yaml

from bortlab.models.arch import PRESETS, Arch, ArchError
from bortlab.search import SearchError, SearchSpace

CONF = Path(__file__).resolve().parents[1] / "conf" / "search"


def load(name):
    return yaml.safe_load((CONF / f"{name}.yaml").read_text())


def test_bort_space_is_the_papers_300_architectures():
    cfg = load("bort")
    space = SearchSpace.from_config(cfg, base=PRESETS["bort_paper"])
    got = space.candidates()
    # independent enumeration: every grid point that is a valid Arch (heads must divide hidden)
    expected = []
    for d, a, h, i in itertools.product(cfg["depth"], cfg["heads"], cfg["hidden"], cfg["intermediate"]):
        try:
            expected.append(PRESETS["bort_paper"].replace(depth=d, heads=a, hidden=h, intermediate=i))
        except ArchError:
            pass
    assert space.grid_size == 360
    assert len(got) == len(expected) == 300  # the number the issue states for the paper's space
    assert set(got) == set(expected)
    assert all(a.vocab_size == 50265 for a in got)  # non-searched fields come from the base


def test_minilm_space_holds_only_subarchitectures_of_minilm():
    cfg = load("minilm")
    src = PRESETS["minilm"]
    got = SearchSpace.from_config(cfg, base=src).candidates()
    assert len(got) == 6 * 4 * 3 * 4
    assert all(a.depth <= src.depth and a.heads <= src.heads and a.hidden <= src.hidden
               and a.intermediate <= src.intermediate and a.attn_width <= src.attn_width
               and a.dim_head == src.dim_head for a in got)  # whole MiniLM heads
    assert cfg["source"] == "minilm"
    assert max(a.num_params() for a in got) == src.num_params()
    assert max(a.num_ops(128) for a in got) == src.num_ops(128)


def test_constraints_fixed_fields_and_head_dim():
    space = SearchSpace.from_config({
        "depth": [1, 2], "heads": [3, 4], "hidden": [64], "intermediate": [64, 128, 256],
        "head_dim": [16], "vocab_size": 100, "constraints": ["intermediate >= 2 * hidden", "depth * heads != 8"],
    })
    got = space.candidates()
    assert {(a.depth, a.heads, a.intermediate) for a in got} == {(1, 3, 128), (1, 3, 256), (1, 4, 128), (1, 4, 256),
                                                                  (2, 3, 128), (2, 3, 256)}
    assert all(a.head_dim == 16 and a.vocab_size == 100 for a in got)  # heads=3 is valid thanks to head_dim
    assert space.fields == ("depth", "heads", "hidden", "intermediate", "head_dim", "vocab_size")
    assert space.overrides(got[0]) == {"arch.depth": 1, "arch.heads": 3, "arch.hidden": 64, "arch.intermediate": 128,
                                       "arch.head_dim": 16, "arch.vocab_size": 100}


def test_empty_space_and_bad_configs_raise_clear_errors():
    with pytest.raises(SearchError, match="search space is empty.*heads=\\[5\\].*divisible"):
        SearchSpace.from_config({"depth": [2], "heads": [5], "hidden": [64], "intermediate": [128]}).candidates()
    with pytest.raises(SearchError, match="empty"):
        SearchSpace.from_config({"depth": [2], "heads": [4], "hidden": [64], "intermediate": [128],
                                 "constraints": ["depth > 100"]}).candidates()
    with pytest.raises(SearchError, match="Unknown key.*layers"):
        SearchSpace.from_config({"layers": [2]})
    with pytest.raises(SearchError, match="no value for \\['hidden', 'intermediate'\\]"):
        SearchSpace.from_config({"depth": [2], "heads": [4]})
    with pytest.raises(SearchError, match="unknown name 'width'"):
        SearchSpace.from_config({"depth": [2], "constraints": ["width > 2"]}, base=PRESETS["tiny"])
    with pytest.raises(SearchError, match="unsupported construct"):
        SearchSpace.from_config({"depth": [2], "constraints": ["depth.bit_length() > 1"]}, base=PRESETS["tiny"]).candidates()
    with pytest.raises(SearchError, match="'depth' has no values"):
        SearchSpace(grid={"depth": ()}, base=PRESETS["tiny"])


def test_unsearched_fields_come_from_the_base():
    base = Arch(6, 12, 384, 1536, vocab_size=1234)
    got = SearchSpace.from_config({"depth": [2, 4]}, base=base).candidates()
    assert got == [base.replace(depth=2), base.replace(depth=4)]
