"""bortlab: find, train and evaluate small, fast BERT-family models."""
__version__ = "0.1.0"
