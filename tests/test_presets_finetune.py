"""Every arch preset fine-tunes a few steps on a sentence-pair, a single-sentence and a multiple-choice task.

Bort's presets keep one token type (as HF's conversion of amazon/bort does) while WordPiece tokenizers emit
segment ids 0/1 for a pair: before the datamodule asked the architecture whether it embeds token types,
`arch=bort task=glue/rte` died with an IndexError in the token-type embedding.
"""
import json
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = sorted(p.stem for p in (CONF / "arch").glob("*.yaml"))
TASKS = ["glue/rte", "glue/sst2", "superglue/copa"]      # pair, single sentence, multiple choice
TINY_BUDGET = ["trainer.max_steps=2", "trainer.limit_val_batches=1", "data.batch_size=2", "data.eval_batch_size=8",
               "task.max_length=32", "trainer.enable_progress_bar=false", "predict=false", "logger=none",
               "callbacks.checkpoint.enabled=false"]


def test_the_presets_are_the_ones_documented():
    assert {"bort", "bort_paper", "bert_base", "bert_large", "minilm", "tiny"} <= set(PRESETS)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_fine_tunes_on_pair_single_and_choice_tasks(preset, task, tmp_path, data_root, compose):
    from bortlab.run import run

    # no checkpoint of these shapes is reachable offline but MiniLM's: the others start from random weights
    init = "pretrained" if preset == "minilm" else "scratch"
    cfg = compose([f"arch={preset}", f"task={task}", f"model.init={init}", f"data.root={data_root}",
                       f"+output_dir={tmp_path}", *TINY_BUDGET])
    objective = run(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["steps"] == 2 and 0.0 <= objective <= 1.0
    assert m["tuple"] == [cfg.arch.depth, cfg.arch.heads, cfg.arch.hidden, cfg.arch.intermediate]
