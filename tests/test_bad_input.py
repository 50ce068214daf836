"""Bad input a user plausibly gives: each is one paragraph naming the thing and the fix, exit code 2, no traceback,
never a silent success. Every case runs `python train.py` as users do."""
import shutil

import pytest

TINY = ["arch=tiny", "task=glue/rte", "trainer.max_steps=1", "trainer.limit_val_batches=1", "predict=false",
        "trainer.enable_progress_bar=false", "logger=none"]


def _header_only_rte(tmp_path, data_root):
    root = tmp_path / "data"
    (root / "RTE").mkdir(parents=True)
    src = data_root / "glue" / "RTE"
    (root / "RTE" / "train.tsv").write_text((src / "train.tsv").read_text().splitlines()[0] + "\n")
    shutil.copy(src / "dev.tsv", root / "RTE" / "dev.tsv")
    return [f"data.root={root}"]


def _truncated_last_ckpt(tmp_path, data_root):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 5000)    # the start of a zip, cut off
    return [f"hydra.run.dir={tmp_path / 'run'}", "resume=auto"]


CASES = {
    # name: (overrides or a function making them, words the message must contain)
    "header-only train file": (_header_only_rte, ["glue/rte train split has no rows", "data.root"]),
    "truncated last.ckpt": (_truncated_last_ckpt, ["last.ckpt is damaged or incomplete", "start afresh"]),
    "missing resume file": (["resume=/nonexistent/last.ckpt"], ["no such checkpoint file", "resume=auto"]),
    "missing pretrained dir": (["arch=minilm", "model.init=pretrained", "model.pretrained=/nonexistent/ckpt"],
                               ["model.pretrained=/nonexistent/ckpt: that path does not exist"]),
    "missing extraction source": (["model.init=extract", "model.source=/nonexistent/model"],
                                  ["model.source=/nonexistent/model: that path does not exist"]),
    "missing tokenizer dir": (["model.tokenizer=./no/such/tokenizer"], ["model.tokenizer=./no/such/tokenizer: that path"]),
    "endless budget": (["trainer.max_epochs=-1", "trainer.max_steps=-1"], ["trains without end", "trainer.max_steps"]),
    "zero budget": (["trainer.max_steps=0"], ["a budget of 0 trains nothing"]),
    "unknown logger name": (["logger.name=foo"], ["logger.name='foo' is not a logger", "logger=wandb"]),
    "unknown logger group": (["logger=foo"], ["Unknown logger 'foo'", "csv, none, wandb"]),
    "unknown task": (["task=glue/foo"], ["Unknown task 'glue/foo'", "glue/rte"]),
    "unknown arch": (["arch=bort_large"], ["Unknown arch 'bort_large'", "bort_paper"]),
    "unwritable run dir": (["hydra.run.dir=/proc/no/such"], ["Cannot write the run directory /proc/no/such"]),
    "unwritable sweep dir": (["-m", "seed=0,1", "hydra.sweep.dir=/proc/no/sweep"], ["Cannot write the run directory"]),
    "zero batch size": (["data.batch_size=0"], ["data.batch_size=0 must be >= 1"]),
    "negative learning rate": (["optim.lr=-1e-4"], ["optim.lr=-0.0001: the learning rate must be a positive"]),
    "non-integer seed": (["seed=abc"], ["seed='abc' is not a whole number"]),
    "heads not dividing hidden": (["arch.heads=5"], ["heads must divide hidden", "head_dim"]),
    "max length beyond positions": (["data.max_length=1000"], ["more than this architecture's 512 positions"]),
    "max length too short for the question": (["task=superglue/multirc", "data.max_length=16"],
                                              ["too short for superglue/multirc", "data.max_length"]),
    "bad init": (["model.init=random"], ["model.init='random' is not one of"]),
    "bad pooling": (["model.pooling=max"], ["model.pooling='max' is not one of"]),
    "bad passage fit": (["data.passage_fit=trim"], ["data.passage_fit='trim' is not one of"]),
    "diagnostic task": (["task=glue/ax"], ["diagnostic set with no training data", "task=glue/mnli"]),
    "fptas epsilon 0": (["-m", "hydra/sweeper=fptas", "search=minilm_small", "hydra.sweeper.epsilon=0"],
                        ["epsilon must be a positive finite number"]),
    "fptas pretrained shape": (["-m", "hydra/sweeper=fptas", "search=minilm_small", "arch=minilm", "model.init=pretrained",
                                "hydra.sweeper.wandb=false"], ["differ from the shape", "model.init=extract"]),
    "fptas empty space": (["-m", "hydra/sweeper=fptas", "search=bort", "arch=bort_paper", "arch.heads=7",
                           "hydra.sweeper.wandb=false"], ["search space is empty"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_paragraph_and_exit_2(case, train, tmp_path, data_root):
    overrides, words = CASES[case]
    if callable(overrides):
        overrides = overrides(tmp_path, data_root)
    multirun = "-m" in overrides
    overrides = [o for o in overrides if o != "-m"]
    base = [] if multirun and "hydra/sweeper=fptas" not in overrides else TINY
    if multirun and not any(o.startswith("hydra.sweep.dir=") for o in overrides):
        overrides.append(f"hydra.sweep.dir={tmp_path / 'sweep'}")
    if not any(o.startswith("data.root=") for o in overrides):
        overrides.append(f"data.root={data_root}")
    p = train(*(["-m"] if multirun else []), *base, *overrides, expect=2, timeout=300)
    out = p.stdout + p.stderr
    for w in words:
        assert w in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    # nothing was trained: no job wrote a score
    assert not list(tmp_path.rglob("metrics.json"))


def test_resume_auto_in_a_dir_without_checkpoints_says_it_starts_afresh(train, tmp_path, data_root):
    p = train(*TINY, f"data.root={data_root}", f"hydra.run.dir={tmp_path / 'typo'}", "resume=auto")
    assert "holds no checkpoints/last.ckpt, so this is a fresh run" in p.stdout + p.stderr
