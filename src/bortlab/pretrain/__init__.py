"""Pre-training stage: the text corpus, the distillation / MLM LightningModule and `run_pretrain`."""
