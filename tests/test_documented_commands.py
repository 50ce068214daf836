"""Every `python train.py …` command in the README, docs/ and the conf/ headers runs as written, at a tiny budget.

The commands are read from the files themselves (a new one is tested the day it is written). Each is run in
the order of its file, in a scratch working directory beside a link to the shared data (so `../shared/data`
resolves as from a clone), with the budget keys replaced: a few steps, one dev batch, no test predictions,
and a coarse ε and 2 steps per candidate for FPTAS sweeps. Placeholders a user fills in (`<run dir>`,
`corpus.txt`) are filled from a table; commands that need what this machine cannot have (the Hugging Face hub,
the GLUE/SuperGLUE files missing from ../shared/data, a SLURM cluster, a GPU) must end in exit 2 with the one
clear message that names it.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest


from doc_commands import REPO, documented_commands, expand

# what a user fills in -> what the test fills in (paths are relative to the scratch working directory)
PLACEHOLDERS = {
    "<dir or hub id>": None,                       # a checkpoint of that shape: none offline (the hub)
    "<run dir of a fine-tuned MiniLM>": "outputs/labellers/cb",
    "<MLM checkpoint dir or hub id>": "runs/teacher_mlm",
    "<labeller run dir>": "outputs/labellers/mrpc",
    "<run dir>": "runs/multirc",
    "<yours>": "debug",
}
# commands that cannot run here, and the words of the message they must end with (exit 2)
OFFLINE = {
    r"arch=bort task=glue/rte$": "amazon/bort",
    r"arch=bert_base task=glue/rte$": "bert-base-uncased",
    r"arch=bert_large task=glue/rte$": "bert-large-uncased",
    r"teacher=FacebookAI/roberta-large": "FacebookAI/roberta-large",
    r"^task=glue/(mnli|qqp|qnli)$": "data file not found",
    r"^task=superglue/(boolq|record)$": "not found",
    r"^task=race/": "not found",
    r"^task=(glue/ax|superglue/axb|superglue/axg)$": "diagnostic set with no training data",
}
NOT_HERE = {   # no SLURM cluster, no GPU: the command is composed (Hydra accepts it), not run
    "hydra/launcher=slurm": "needs a SLURM cluster (tests/test_launchers.py runs the same path with submitit_local)",
}
FINETUNE_BUDGET = {"trainer.max_steps": "2", "trainer.limit_val_batches": "1", "predict": "false",
                   "trainer.enable_progress_bar": "false", "data.batch_size": "4"}
PRETRAIN_BUDGET = {"trainer.max_steps": "2", "task.eval_every": "1", "trainer.enable_progress_bar": "false",
                   "data.batch_size": "4", "task.max_length": "32"}
# a handful of cells, one job each, the cheapest member: Bort's space otherwise trains 150M-parameter shapes
SWEEP_BUDGET = {"hydra.sweeper.steps": "2", "hydra.sweeper.epsilon": "100.0", "hydra.sweeper.fold": "[]",
                "hydra.sweeper.representative": "cheapest", "hydra.sweeper.wandb": "false",
                "hydra.launcher.n_jobs": "1"}


def _is_elided(cmd: str) -> bool:
    return cmd in ("", "…", "...") or "…" in cmd or " ... " in f" {cmd} " or "<sweeps>" in cmd or "<benchmark>" in cmd


def _with_budget(args: list[str], budget: dict[str, str]) -> list[str]:
    """Replace the value of each budget key the command sets; append the others."""
    keys = {a.split("=", 1)[0].lstrip("+"): j for j, a in enumerate(args) if "=" in a}
    args = list(args)
    for k, v in budget.items():
        if k in keys:
            args[keys[k]] = f"{args[keys[k]].split('=', 1)[0]}={v}"
        else:
            args.append(f"{k}={v}")
    return args


def _read_later(commands) -> tuple[str, ...]:
    """Relative run paths that documented commands read (a labeller, a teacher, a checkpoint), as prefixes."""
    found = set()
    for _, _, cmd in commands:
        for arg in cmd.split():
            key, _, value = arg.partition("=")
            if value and not key.startswith("hydra.") and value.startswith(("outputs/", "runs/")):
                found.add(value.split("<", 1)[0])
    return tuple(sorted(found))


def _free_disk(cwd: Path) -> None:
    """~80 runs would keep ~15 GB of checkpoints (a MiniLM run: 363 MB): keep only those a later command reads."""
    keep = _read_later(CASES)
    for ckpt in cwd.rglob("*.ckpt"):
        rel = ckpt.relative_to(cwd).as_posix()
        if not any(rel.startswith(k) or k.startswith(rel.rsplit("/checkpoints/", 1)[0]) for k in keep):
            ckpt.unlink()


CASES = [c for c in documented_commands(r"(?:\./run\.sh train|python train\.py)\b") if not _is_elided(c[2])]


def test_the_docs_have_commands_to_test():
    files = {f for f, _, _ in CASES}
    assert {"README.md", "docs/fptas.md", "docs/pretraining.md", "docs/agora.md", "docs/tasks.md"} <= files
    assert len(CASES) > 50


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_root):
    """One scratch working directory for all the commands, in file order (a later command may read what an
    earlier one wrote: a labeller run, a teacher), beside a link `shared` -> the real shared data (so
    ../shared/data resolves as from a clone), with a small text corpus as corpus.txt."""
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(data_root.parent)
    cwd = root / "work"
    cwd.mkdir()
    sents = [r.split("\t")[1] for r in (data_root / "glue" / "SST-2" / "train.tsv").read_text().splitlines()[1:801]]
    (cwd / "corpus.txt").write_text("\n".join(" ".join(sents[k:k + 8]) for k in range(0, 800, 8)) + "\n")
    return cwd


@pytest.mark.parametrize("where,line,cmd", CASES, ids=[f"{f}:{n}" for f, n, _ in CASES])
def test_documented_command_runs_as_written(where, line, cmd, workdir, train):
    cwd = workdir
    tag = f"{Path(where).stem}-{line}"
    cmd = expand(cmd, REPO / where)
    cmd = cmd.replace("[resume=auto]", "resume=auto")
    for prefix in re.findall(r"([^\s=]+)/<time>", cmd):      # Hydra's default run dir: the newest one there
        runs = sorted((cwd / prefix).glob("*"))
        assert runs, f"{cmd!r} reads {prefix}/<time>, which an earlier documented command should have made"
        cmd = cmd.replace(f"{prefix}/<time>", f"{prefix}/{runs[-1].name}")
    for ph, value in PLACEHOLDERS.items():
        if ph in cmd:
            if value is None:
                pytest.skip(f"{ph}: a checkpoint of this shape is only on the hub")
            cmd = cmd.replace(ph, value)
    assert "<" not in cmd and "$" not in cmd.replace("${minilm_path:}", ""), f"unfilled placeholder in {cmd!r}"
    args = shlex.split(cmd)
    for key, why in NOT_HERE.items():
        if key in args:
            pytest.skip(why)
    multirun = "-m" in args
    args = [a for a in args if a != "-m"]
    sweeper = next((a.split("=", 1)[1] for a in args if a.startswith("hydra/sweeper=")), None)
    task = next((a.split("=", 1)[1] for a in args if a.startswith("task=")), "")
    budget = dict(PRETRAIN_BUDGET if task.startswith("pretrain/") else FINETUNE_BUDGET)
    args = _with_budget(args, budget)
    if sweeper == "fptas":
        args = _with_budget(args, {k: v for k, v in SWEEP_BUDGET.items() if k != "hydra.launcher.n_jobs"
                                   or "hydra/launcher=joblib" in args})
    if multirun and not any(a.startswith("hydra.sweep.dir=") for a in args):
        args.append(f"hydra.sweep.dir=multirun/{tag}")
    if not multirun and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir=outputs/{task or 'run'}/{tag}")    # as Hydra's outputs/<task>/<time>
    expect_words = next((w for pattern, w in OFFLINE.items() if re.search(pattern, cmd)), None)
    p = train(*(["-m"] if multirun else []), *args, cwd=cwd, expect=2 if expect_words else 0, timeout=600,
              env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    _free_disk(cwd)
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out[-3000:]
    if expect_words:
        assert expect_words in out, out[-3000:]
