"""A toy Hydra app for the fptas sweeper tests: the job's error is a synthetic ABnC error of the composed
architecture (no training), so a sweep runs in seconds and its optimum is known.

    python tests/apps/toy.py -m hydra/sweeper=fptas search=toy hydra.sweeper.epsilon=0.2

`log_file` appends one JSON line per job (to count invocations and worker processes); `fail_if` (an
expression over the Arch fields) makes matching jobs raise, `perfect_if` return error 0; `garbage` makes every job return a string;
`noise` scales the error by (1 + noise * (seed - 1)), so seeds 0, 1, 2 average to the noiseless error.
"""
import json
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from bortlab.models.arch import Arch
from bortlab.search.synthetic import ABnCInstance


@hydra.main(version_base="1.3", config_path="conf", config_name="toy")
def main(cfg: DictConfig):
    arch = Arch.from_dict(OmegaConf.to_container(cfg.arch, resolve=True))
    theta = {"lr": cfg.optim.lr}
    if cfg.log_file:
        with open(cfg.log_file, "a") as f:  # one short O_APPEND write per job: safe across processes
            f.write(json.dumps({"tuple": list(arch.tuple), "lr": cfg.optim.lr, "steps": cfg.trainer.max_steps,
                                "seed": cfg.seed, "pid": os.getpid()}) + "\n")
    if cfg.fail_if and eval(cfg.fail_if, {}, arch.to_dict()):  # test-only app: the expression is ours
        raise RuntimeError(f"toy job failing on purpose for {arch}")
    if cfg.perfect_if and eval(cfg.perfect_if, {}, arch.to_dict()):
        return 0.0                      # a perfect dev score
    if cfg.garbage:
        return "not a number"
    return ABnCInstance(**cfg.instance).error(arch, theta) * (1 + cfg.noise * (cfg.seed - 1))


if __name__ == "__main__":
    main()
