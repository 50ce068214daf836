"""The `fptas` sweeper's config, registered in Hydra's ConfigStore as hydra/sweeper=fptas.

Only dataclasses and the ConfigStore are imported here: Hydra imports this module on every run while it
scans for plugins, so nothing heavy may load at import time."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class CostConf:
    seq_len: int = 128        # reference sequence length of the operation count i
    # p without embeddings (the paper's effective size) instead of all parameters; null: effective when the
    # candidates are extracted from a source (model.init=extract), whose embeddings they inherit anyway
    effective: Optional[bool] = None
    latency: bool = False     # i = measured forward latency on `device` instead of the op count
    device: str = "cpu"


@dataclass
class FPTASSweeperConf:
    _target_: str = "hydra_plugins.bortlab_fptas_sweeper.fptas_sweeper.FPTASSweeper"
    epsilon: float = 0.2                 # cells on log S (W's saving factor): answer >= (1 - epsilon) W* under ABnC
    # after the epsilon pass, refine x its evaluations more on the cells next to the best (0: the pass alone);
    # budget = total (arch, theta) evaluations instead. Both only add evaluations: the guarantee stands
    refine: float = 1.0
    budget: Optional[int] = None
    # also report the cheapest (lowest i) evaluated candidate with e <= error_cap (null: not reported)
    error_cap: Optional[float] = None
    # also report the most accurate (lowest e) evaluated candidate at least this many times cheaper in
    # operations (i) than the maximum point T, e.g. 4 (null: not reported)
    min_speedup: Optional[float] = None
    # W = 0 for errors at or above this (a model no better than it is worth nothing however cheap); null: 1 when
    # the jobs return objective=rescaled errors (1 = the constant predictor), else none; .inf: none
    error_ceiling: Optional[float] = None
    # e(arch, θ) = the mean error over the product of these overrides, e.g. {seed: [0, 1, 2]} or
    # {task: [glue/sst2, glue/stsb], seed: [0, 1]} (with objective=rescaled); one row per job in replicates.csv
    replicates: Optional[Any] = None
    steps: Optional[int] = None          # training budget per candidate; null = the job's own
    steps_key: str = "trainer.max_steps"  # where the budget goes in the job config
    # hyperparameter sets Θ, each a dict of overrides ({optim.lr: 5e-5}); [] = one empty set. Sweep
    # overrides on keys outside `arch` (optim.lr=1e-4,5e-5) multiply them.
    thetas: List[Any] = field(default_factory=list)
    max_batch_size: Optional[int] = None  # jobs per launcher batch (candidates.csv is written after each)
    max_failure_rate: float = 0.25       # abort when more than this share of the evaluations failed
    # the search space: a name (space=minilm: conf/search/minilm.yaml), a mapping shaped like those files,
    # or null = the job config's `search` node (search=bort)
    space: Optional[Any] = None
    space_key: str = "search"
    arch_key: str = "arch"               # the job config node holding the Arch fields
    source: Optional[Any] = None         # maximum point T: a preset name or Arch fields; null = the space's
    representative: str = "abnc"         # rule choosing a cell's representative: abnc | cheapest
    fold: List[str] = field(default_factory=lambda: ["heads"])  # cost-neutral fields searched like θ
    cost: CostConf = field(default_factory=CostConf)
    params: Dict[str, str] = field(default_factory=dict)  # sweep overrides, as on the command line
    # set on every job unless the command line sets the key: candidates are scored on dev, and predicting the
    # test split took 80 s of a 90 s RTE job
    job_defaults: Dict[str, Any] = field(default_factory=lambda: {"predict": False})
    # sub-architectures of a pretrained source inherit its weights: a job config with model.init=pretrained
    # runs its candidates with model.init=extract unless the command line sets model.init (null: never)
    init_key: Optional[str] = "model.init"
    # checks the first job's config and every candidate before anything is launched (null: no check)
    preflight: Optional[str] = "bortlab.preflight.check_jobs"
    plot: bool = True                    # write pareto.png
    wandb: bool = True                   # W&B summary run (offline unless WANDB_MODE is set)
    wandb_project: str = "bortlab"


ConfigStore.instance().store(group="hydra/sweeper", name="fptas", node=FPTASSweeperConf, provider="bortlab")
