"""The `agora` sweeper's config, registered in Hydra's ConfigStore as hydra/sweeper=agora (light imports only:
Hydra imports this module on every run while scanning for plugins)."""
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class AgoraSweeperConf:
    _target_: str = "hydra_plugins.bortlab_agora_sweeper.agora_sweeper.AgoraSweeper"
    keep: float = 0.5                  # share of the ranked θ kept each round (0.5: successive halving)
    max_rounds: Optional[int] = None   # stop earlier than "until no θ remains"
    rank_on: str = "agora_dev"        # agora_dev: Agora's own dev set | run: the run's dev score (honest with
                                      # data.tune_split: Agora feeds from its dev set, whose score then rises)


ConfigStore.instance().store(group="hydra/sweeper", name="agora", node=AgoraSweeperConf, provider="bortlab")
