"""From a source model to a small, fast, exported one, with baselines and evidence: `python pipeline.py`.

Stages (bortlab.pipeline.run): search (the fptas sweeper on the validated proxy) → distil (hidden-state KD from
the source) → fine-tune (every model, every task, every seed, one recipe) → export (transformers + ONNX) →
latency (side by side) → report (bort_small.csv, bort_small.md, bort_small_frontier.png)."""
