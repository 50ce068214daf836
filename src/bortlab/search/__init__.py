"""Search space, cost model, the FPTAS for optimal subarchitecture extraction, Pareto utilities, reports.

Pure Python: nothing here imports Hydra (the `fptas` sweeper in `hydra_plugins.bortlab_fptas_sweeper`
is a thin layer over this package)."""
from bortlab.search.cost import CostModel
from bortlab.search.fptas import Candidate, SearchResult, search, theta_key, w_coefficient
from bortlab.search.pareto import hypervolume, pareto_front
from bortlab.search.space import SearchError, SearchSpace

__all__ = ["CostModel", "Candidate", "SearchError", "SearchResult", "SearchSpace", "hypervolume",
           "pareto_front", "search", "theta_key", "w_coefficient"]
