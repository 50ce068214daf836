"""`hydra/sweeper=agora`: Agora's Θ loop (bortlab.agora.theta) as a Hydra sweeper. The config is registered
in `config.py` (imported on every Hydra start, so it stays light); the sweeper is in `agora_sweeper.py`."""
