"""search → distil → fine-tune → export → latency → report, each stage a set of resumable jobs.

    python pipeline.py                                   # conf/pipeline.yaml: the offline MiniLM, 5 tasks, 3 seeds
    python pipeline.py search.arch=[3,6,192,768]         # skip the search, use this shape

Every stage is a list of ordinary `train.py` / `bortlab.export` runs under `out/` (bortlab.pipeline.jobs): a
rerun skips what is finished, and a changed setting gets fresh directories instead of reusing old results. The
search is the fptas sweeper with the validated error proxy; the searched model and the baselines
(bortlab.pipeline.models) are then distilled, fine-tuned and exported alike, and their latency measured side
by side in one process (bortlab.pipeline.report).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError
from bortlab.pipeline.jobs import Job, JobFailed, run_jobs
from bortlab.pipeline.models import ModelSpec, exportable, model_specs

log = logging.getLogger("bortlab.pipeline")
TRAIN = "train.py"
STAGES = ("search", "distil", "finetune", "export", "report")   # `until`: the last stage to run
PICKS = {"best": "best", "knee": "knee", "speedup": "best_at_speedup"}   # search.pick -> optimization_results.yaml


def _list(x) -> list:
    return list(OmegaConf.to_container(x, resolve=True)) if OmegaConf.is_config(x) else list(x or [])


def _render(value) -> str:
    from hydra_plugins.bortlab_fptas_sweeper.command_line import render

    return render(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)


def check(cfg: DictConfig) -> None:
    """What would fail in every job, found before any starts."""
    missing = [k for k in ("data_root", "corpus") if not cfg.get(k)]
    if "corpus" in missing and cfg.search.arch is not None and not _needs_distil(cfg):
        missing.remove("corpus")
    if missing:
        raise SetupError(
            f"The pipeline needs {' and '.join(missing)}: data_root is the directory holding glue/ and superglue/ "
            "(or export BORTLAB_DATA), corpus a plain-text pre-training corpus for the search proxy and the "
            "distillation (write one with `python -m bortlab.pretrain.make_corpus --data ../shared/data --out "
            "corpus.txt`, then pass corpus=corpus.txt or export BORTLAB_CORPUS).")
    for key in ("data_root", "corpus"):
        if cfg.get(key) and not Path(str(cfg[key])).expanduser().exists():
            raise SetupError(f"{key}={cfg[key]} does not exist. Pass {key}=<an existing path>.")
    if not _list(cfg.tasks) or not _list(cfg.seeds):
        raise SetupError("tasks and seeds must each name at least one, e.g. tasks=[glue/sst2] seeds=[0,1,2].")
    if str(cfg.get("until", "report")) not in STAGES:
        raise SetupError(f"until={cfg.until!r} is not a stage: choose one of {', '.join(STAGES)} (the pipeline stops "
                         "after it; a rerun with a later one resumes from there).")
    if cfg.search.pick not in PICKS:
        raise SetupError(f"search.pick={cfg.search.pick!r}: choose best (argmax W), knee (the front's knee) or "
                         "speedup (the lowest proxy error among candidates with search.min_speedup x fewer operations "
                         "than the source).")
    if cfg.search.pick == "speedup" and not (cfg.search.get("min_speedup") or 0) > 0:
        raise SetupError(f"search.pick=speedup needs search.min_speedup > 0 (e.g. 4), got {cfg.search.get('min_speedup')!r}.")


def _needs_distil(cfg) -> bool:
    return bool(cfg.distil.steps) and cfg.distil.steps > 0


def search_job(cfg, root: Path) -> Job:
    s = cfg.search
    space = f"search={s.space}" if isinstance(s.space, str) else f"hydra.sweeper.space={_render(s.space)}"
    argv = [TRAIN, "-m", "hydra/sweeper=fptas", space, f"experiment={s.experiment}",
            f"arch={cfg.source.arch}", f"data.corpus={cfg.corpus}", f"hydra.sweeper.epsilon={s.epsilon}",
            f"hydra.sweeper.refine={s.refine}", f"hydra.sweeper.replicates={_render(s.replicates)}",
            *([f"hydra.sweeper.min_speedup={s.min_speedup}"] if s.get("min_speedup") else []),
            # candidates.csv (the resume state) is written after every batch: batches of `jobs` candidates, so
            # an interrupted search loses at most the evaluations in flight
            f"hydra.sweeper.max_batch_size={cfg.jobs}", "trainer.enable_progress_bar=false",
            "hydra/launcher=joblib", f"hydra.launcher.n_jobs={cfg.jobs}", "hydra.sweeper.wandb=false",
            *_list(s.overrides)]
    return Job("search", argv, done_file="optimization_results.yaml", dir_arg="hydra.sweep.dir", root=root)


def chosen_shape(cfg, root: Path) -> tuple[int, int, int, int]:
    if cfg.search.arch is not None:
        shape = tuple(int(x) for x in _list(cfg.search.arch))
        if len(shape) != 4:
            raise SetupError(f"search.arch={list(shape)} must be four numbers [depth, heads, hidden, intermediate].")
        return shape
    job = search_job(cfg, root)
    run_jobs([job], 1, cfg.threads, what="search")
    results = yaml.safe_load((job.dir / "optimization_results.yaml").read_text())
    pick = results["best_params"] if cfg.search.pick == "best" else (results.get(PICKS[cfg.search.pick]) or {}).get("params")
    if not pick:
        raise SetupError(f"The search in {job.dir} has no {cfg.search.pick}; use search.pick=best.")
    shape = tuple(int(pick[f"arch.{k}"]) for k in ("depth", "heads", "hidden", "intermediate"))
    log.info("search: %s picks %s (%s)", cfg.search.pick, shape, job.dir / "optimization_results.yaml")
    return shape


def _arch_args(cfg, spec: ModelSpec) -> list[str]:
    return [f"arch={cfg.source.arch}", *spec.arch_overrides(int(cfg.source.head_dim))]


def _extract_args(cfg, spec: ModelSpec) -> list[str]:
    out = [f"model.init={spec.init}"]
    if spec.init == "extract":
        out.append(f"model.source={cfg.source.path}")
        if spec.layers is not None:
            out.append(f"model.layers={_render(list(spec.layers))}")
    return out


def distil_job(cfg, spec: ModelSpec, root: Path) -> Job:
    argv = [TRAIN, "task=pretrain/kd", *_arch_args(cfg, spec), f"teacher={cfg.source.path}", *_extract_args(cfg, spec),
            # max_epochs=-1: distil.steps is the budget; the trainer's default 3 epochs would cut it short on a
            # small corpus (1,680 of 2,000 steps on the 2-CPU box's corpus)
            f"data.corpus={cfg.corpus}", f"trainer.max_steps={cfg.distil.steps}", "trainer.max_epochs=-1", "logger=none",
            "trainer.enable_progress_bar=false", "callbacks.checkpoint.save_last=false", *_list(cfg.distil.overrides)]
    return Job(f"distil/{spec.name}", argv, root=root)


def finetune_steps(cfg, task: str) -> int:
    from bortlab.data import read_split

    n = len(read_split(task, "train", root=cfg.data_root))
    epochs = math.ceil(n / cfg.finetune.batch_size) * int(cfg.finetune.epochs)
    return min(max(epochs, int(cfg.finetune.get("min_steps", 0) or 0)), int(cfg.finetune.max_steps))


def finetune_job(cfg, spec: ModelSpec, task: str, seed: int, steps: int, distilled: Job | None, root: Path) -> Job:
    if spec.init == "pretrained":
        init = ["model.init=pretrained", f"model.pretrained={cfg.source.path}"]
    elif distilled is not None:
        init = ["model.init=pretrained", f"model.pretrained={distilled.dir}"]
    else:
        init = _extract_args(cfg, spec)
    # one dev evaluation, at the last step: the score is the final model's, no checkpoint chosen on dev
    argv = [TRAIN, f"task={task}", *_arch_args(cfg, spec), *init, f"seed={seed}", f"data.root={cfg.data_root}",
            f"data.batch_size={cfg.finetune.batch_size}", f"trainer.max_steps={steps}", "trainer.max_epochs=-1",
            "trainer.check_val_every_n_epoch=null", f"trainer.val_check_interval={steps}", "predict=false",
            "logger=none", "trainer.enable_progress_bar=false", "callbacks.checkpoint.save_last=false",
            *_list(cfg.finetune.overrides)]
    return Job(f"finetune/{spec.name}/{task.replace('/', '-')}/seed{seed}", argv, root=root)


def export_job(cfg, ft: Job, root: Path) -> Job:
    argv = ["-m", "bortlab.export", str(ft.dir), *(["--onnx"] if cfg.export.onnx else [])]
    return Job(ft.name.replace("finetune/", "export/", 1), argv, done_file="config.json", dir_arg=None, root=root)


def _stops_after(stage: str, until: str, failed: list[str]) -> bool:
    """True when `until` names this stage; the stage's failures are raised first (a rerun retries them)."""
    if until != stage:
        return False
    if failed:
        raise JobFailed("\n".join(failed))
    return True


def run_pipeline(cfg: DictConfig) -> Path:
    from bortlab.pipeline.report import measure_latency, write_report

    check(cfg)
    root = Path(str(cfg.out)).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    from bortlab.models.arch import Arch

    source = Arch.preset(str(cfg.source.arch))
    shape = chosen_shape(cfg, root)
    until = str(cfg.get("until", "report"))
    if until == "search":
        log.info("until=search: stopping with the searched shape %s", shape)
        return root
    specs = model_specs(source, shape, int(cfg.source.head_dim), _list(cfg.baselines),
                        _list(cfg.source.intermediates), _list(cfg.source.hiddens))
    for spec in specs:
        log.info("model %-22s %s init=%s distil=%s  (%s)", spec.name, spec.shape, spec.init, spec.distil, spec.notes)

    distil = {s.name: distil_job(cfg, s, root) for s in specs if s.distil and _needs_distil(cfg)}
    steps = {t: finetune_steps(cfg, t) for t in _list(cfg.tasks)}
    finetune = [(s, t, seed, finetune_job(cfg, s, t, seed, steps[t], distil.get(s.name), root))
                for seed in _list(cfg.seeds) for t in _list(cfg.tasks) for s in specs]   # whole seeds first
    # fine-tunes that need no distilled weights (the source, the no-distil baseline) queue behind the
    # distillations in one pool: a core freed by a finished distillation goes on with them instead of idling
    # while the last distillation runs alone
    independent = [j for s, *_, j in finetune if s.name not in distil] if until != "distil" else []
    failed = []
    try:
        run_jobs([*distil.values(), *independent], cfg.jobs, cfg.threads, what="distillation and independent fine-tuning")
    except JobFailed as e:
        if not all(j.finished() for j in distil.values()):
            raise                   # every distilled model's fine-tunes need it: fix and rerun
        failed.append(str(e))       # a fine-tune failed: the others go on, the rerun retries it
    if _stops_after("distil", until, failed):
        return root

    tried = {j.name for j in independent if not j.finished()}      # failed above: retried by a rerun, not now
    try:
        run_jobs([j for *_, j in finetune if j.name not in tried], cfg.jobs, cfg.threads, what="fine-tuning")
    except JobFailed as e:      # report what finished; the rerun retries the rest
        failed.append(str(e))
    if _stops_after("finetune", until, failed):
        return root

    exports = {}
    if cfg.export.enabled:
        done = [(s, j) for s, _, _, j in finetune if j.finished() and exportable(s.shape, int(cfg.source.head_dim))]
        exports = {j.name: export_job(cfg, j, root) for _, j in done}
        try:
            run_jobs(list(exports.values()), cfg.jobs, cfg.threads, what="export")
        except JobFailed as e:     # e.g. a model without a pooler: served by bortlab itself, reported as such
            log.warning("%s", e)
    if _stops_after("export", until, failed):
        return root

    latency = measure_latency(cfg, specs, finetune, exports, root)
    report = write_report(cfg, specs, finetune, exports, latency, Path(str(cfg.report_dir)).expanduser())
    if failed:
        raise JobFailed("\n".join(failed))
    return report
