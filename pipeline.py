"""Source model → searched, distilled, fine-tuned, exported small model, against baselines.   python pipeline.py

The stages live in `bortlab.pipeline.run`; conf/pipeline.yaml documents every setting. A rerun resumes.
"""
import logging
import sys

import hydra
from omegaconf import DictConfig

from bortlab.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    from bortlab.errors import USER_ERRORS
    from bortlab.pipeline.jobs import JobFailed
    from bortlab.pipeline.run import run_pipeline

    try:
        run_pipeline(cfg)
    except (*USER_ERRORS, JobFailed) as e:
        logging.getLogger("bortlab.pipeline").error("%s: %s", type(e).__name__, e)
        sys.exit(2)


if __name__ == "__main__":
    main()
