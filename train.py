"""Fine-tune, sweep and search BERT-family architectures.   python train.py arch=minilm task=glue/rte

The logic lives in `bortlab.run.run`; this file only hands it the composed Hydra config and returns its
objective (1 - dev selection metric) so that sweepers can minimise it.
"""
import hydra
from omegaconf import DictConfig

from bortlab.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from bortlab.run import run

    return run(cfg)


if __name__ == "__main__":
    main()
