"""bortlab: find, train and evaluate small, fast BERT-family models."""
import logging as _logging

__version__ = "0.1.0"

# torchao (precision=int8) warns at every import that its CUDA-only extensions do not load, and transformers
# imports it whenever it is installed: on a CPU machine that is not news, so those lines are dropped
_logging.getLogger("torchao").addFilter(lambda record: not record.getMessage().startswith("Failed to load"))
