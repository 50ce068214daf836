"""`hydra/sweeper=fptas`: bortlab's FPTAS for optimal subarchitecture extraction as a Hydra sweeper.

Hydra finds it by importing every module under the `hydra_plugins` namespace package (which therefore has
no `__init__.py`); the config is registered in `config.py`, the sweeper lives in `fptas_sweeper.py`.
"""
