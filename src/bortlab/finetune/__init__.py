"""The fine-tuning stage: `run_finetune(cfg)` (`bortlab.finetune.run`)."""
