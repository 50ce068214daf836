"""Search space, cost model, the FPTAS for optimal subarchitecture extraction, Pareto utilities."""
