"""Fine-tune, sweep and search BERT-family architectures.   python train.py arch=minilm task=glue/rte

The logic lives in `bortlab.run.run`; this file only hands it the composed Hydra config and returns its
objective (1 - dev selection metric) so that sweepers can minimise it.
"""
import logging
import sys

import hydra
from omegaconf import DictConfig

from bortlab.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    import bortlab.distributed
    from bortlab.errors import USER_ERRORS
    from bortlab.run import run

    bortlab.distributed.ENTRY = __file__    # what DDP workers run (sys.argv is not the job's command in sweeps)

    try:
        return run(cfg)
    except USER_ERRORS as e:
        # bad input: one clear paragraph instead of a stack trace. In a multirun the sweeper records the
        # failure and goes on, so re-raise there.
        if str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
            raise
        logging.getLogger("bortlab").error("%s: %s", type(e).__name__, e)
        sys.exit(2)


GROUPS = ("task", "arch", "search", "experiment", "logger", "trainer", "callbacks", "optim")


def check_output_dir(argv: list[str]) -> None:
    """Hydra creates the run (or sweep) directory before any bortlab code runs, and a directory it cannot
    create ends in its traceback: check the nearest existing parent first."""
    import os
    from pathlib import Path

    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = next((a.split("=", 1)[1] for a in argv if a.startswith(key + "=")), "multirun" if multirun else "outputs")
    target = target.split("$", 1)[0].strip("'\"") or "."    # the part before any ${...} interpolation
    path = Path(target).expanduser().absolute()
    try:    # create what Hydra would (the part before any interpolation), to learn whether it can be
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK | os.X_OK)
        why = "it is not writable"
    except OSError as e:
        writable, why = False, e.strerror or str(e)
    if not writable:
        print(f"Cannot write the run directory {target} ({why}). Pass {key}=<a directory you can write>, "
              "or run from a writable working directory.", file=sys.stderr)
        sys.exit(2)


def check_group_choices(argv: list[str], conf: str = "conf") -> None:
    """Hydra's own error for `task=glue/foo` is "Could not find 'task/glue/foo'" with no list of what exists;
    name the known options (and the fix) before Hydra gets there."""
    from pathlib import Path

    root = Path(__file__).resolve().parent / conf
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in GROUPS or "(" in value:   # choice(...), glob(...)
            continue
        known = sorted(str(p.relative_to(root / key).with_suffix("")) for p in (root / key).rglob("*.yaml"))
        for choice in value.split(","):     # a multirun sweeps several
            if choice and choice != "null" and choice not in known:
                print(f"Unknown {key} {choice!r}. Known: {', '.join(known)}. "
                      f"Pass one of them, e.g. {key}={known[0]} (files under {root / key}).", file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    check_output_dir(sys.argv[1:])
    main()
