"""`task=pretrain/kd` and `task=pretrain/mlm`: pre-train a student and return its held-out loss.

    python train.py task=pretrain/kd arch=tiny teacher=<MLM checkpoint dir or hub id> data.corpus=corpus.txt

The run directory gets `metrics.json` (held-out loss before and after, steps, tokens, throughput),
`loss_curve.png` (train and held-out loss against steps), `history.json` (the points of that plot),
`checkpoints/{best,last}.ckpt` (resume with `resume=auto`) and `export/`, a transformers `BertForMaskedLM`
directory (written atomically) that every later stage takes by path: `teacher=`, `model.pretrained=`,
`model.source=` (extraction) or fine-tuning with `model.init=pretrained`.
"""
from __future__ import annotations

import contextlib
import logging

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _loading(role: str, name):
    """Loading failures (a missing dir, an unreachable hub, a checkpoint without the weights we need) become one
    clear SetupError naming the role and the path; errors that already are user errors pass unchanged."""
    from bortlab.errors import USER_ERRORS
    try:
        yield
    except USER_ERRORS:
        raise
    except (OSError, ValueError) as e:
        raise SetupError(f"Could not load the {role} {name!r}: {e}") from e


def resolve_teacher(cfg: DictConfig) -> str | None:
    teacher = cfg.get("teacher")
    if teacher in (None, "", "null", "none"):
        if str(cfg.task.name) == "pretrain/kd":
            raise SetupError("task=pretrain/kd needs a teacher: teacher=<local dir or hub id of a BERT/RoBERTa "
                             "masked-LM checkpoint, or a bortlab pre-training run/export dir>, or teacher=minilm "
                             "(the offline MiniLM; hidden-state distillation). task=pretrain/mlm trains without one.")
        return None
    if str(cfg.task.name) == "pretrain/mlm":
        raise SetupError(f"task=pretrain/mlm trains without a teacher but teacher={teacher} was given; use "
                         "task=pretrain/kd to distil from it.")
    if str(teacher) == "minilm":
        from bortlab.config import minilm_path
        return minilm_path()
    return str(teacher)


def build_tokenizer_for(cfg: DictConfig, teacher: str | None):
    """The teacher's tokenizer unless `model.tokenizer` is set: distillation needs the teacher's vocabulary."""
    from bortlab.models.build import build_tokenizer, load_tokenizer

    if teacher is None or cfg.model.get("tokenizer"):
        return build_tokenizer(cfg)
    try:
        return load_tokenizer(teacher)
    except Exception as e:
        raise SetupError(f"The teacher {teacher!r} ships no loadable tokenizer ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]}). Pass model.tokenizer=<dir or hub id of the tokenizer the "
                         "teacher was trained with>.") from e


def check_shared_vocab(student, teacher, tokenizer, teacher_name: str) -> None:
    """Teacher and student must index the same vocabulary: same embedding rows, and the tokenizer fits both."""
    from bortlab.models.hf import VocabMismatchError, check_vocab

    check_vocab(teacher.encoder, tokenizer, checkpoint=teacher_name)
    if student.arch.vocab_size != teacher.arch.vocab_size:
        raise VocabMismatchError(
            f"Teacher/student vocabulary mismatch: the teacher {teacher_name!r} has {teacher.arch.vocab_size} "
            f"embedding rows, the student {student.arch.vocab_size}. Distillation compares their predictions token "
            "by token, so both must use one vocabulary: start the student from scratch (it then takes the teacher's "
            "vocabulary), or extract it from a checkpoint that shares the teacher's tokenizer.")


def build_student(cfg: DictConfig, tokenizer, teacher):
    """The student `MaskedLM` per model.init (`bortlab.models.build.build_encoder`, as every stage builds its
    model): a scratch student takes the teacher's vocabulary; vocabularies are checked by the caller."""
    from bortlab.models.build import build_encoder

    vocab = teacher.arch.vocab_size if teacher is not None else None
    return build_encoder(cfg, tokenizer, mlm=True, vocab_size=vocab, check_tokenizer=False)


def run_pretrain(cfg: DictConfig) -> float:
    from bortlab.curves import Curves, plot_curve
    from bortlab.distributed import is_rank_zero
    from bortlab.models.hf import ExportError, check_vocab
    from bortlab.models.mlm import export_mlm, load_mlm
    from bortlab.pretrain.corpus import CorpusDataModule
    from bortlab.pretrain.distill import DistillModule
    from bortlab.stage import Stage

    t = cfg.task
    with Stage(cfg) as stage:
        teacher_name = resolve_teacher(cfg)
        tokenizer = build_tokenizer_for(cfg, teacher_name)
        with _loading("teacher", teacher_name):
            teacher = load_mlm(teacher_name) if teacher_name else None
        student = build_student(cfg, tokenizer, teacher)
        if teacher is not None:   # the teacher/student message first: it names the real problem
            check_shared_vocab(student, teacher, tokenizer, teacher_name)
        check_vocab(student.encoder, tokenizer)
        arch = student.arch
        log.info("%s: student %s (%.2fM parameters), teacher %s", t.name, arch, arch.num_params() / 1e6,
                 teacher_name and f"{teacher_name} {teacher.arch}{'' if teacher.head is not None else ' (hidden states)'}")

        d = cfg.data
        dm = CorpusDataModule(
            tokenizer, corpus=OmegaConf.to_container(d.corpus) if OmegaConf.is_list(d.get("corpus")) else d.get("corpus"),
            dataset=d.get("dataset"), dataset_config=d.get("dataset_config"), dataset_split=d.get("dataset_split", "train"),
            text_column=d.get("text_column", "text"), doc_format=d.get("doc_format", "auto"), cache_dir=d.get("cache_dir"),
            max_length=d.get("max_length") or t.max_length, batch_size=d.batch_size, eval_batch_size=d.eval_batch_size,
            heldout=d.get("heldout", 0.02), heldout_max_blocks=d.get("heldout_max_blocks", 64),
            mlm_probability=t.mlm_probability, num_workers=d.num_workers, seed=int(cfg.seed), vocab_size=arch.vocab_size)
        dm.setup("fit")
        with _loading("distillation set-up for the teacher", teacher_name):
            module = DistillModule(student, teacher, alpha=t.get("alpha", 0.1), beta=t.get("beta", 0.5),
                                   temperature=t.get("temperature", 2.0), hidden_weight=t.get("hidden_weight"),
                                   **OmegaConf.to_container(t.optim, resolve=True))

        history = Curves()
        every = int(t.eval_every)
        max_steps = int(cfg.trainer.get("max_steps", -1) or -1)
        if max_steps > 0:
            every = min(every, max_steps)
        # held-out loss every `task.eval_every` steps; the corpus loader is Lightning-sharded under DDP
        trainer = stage.trainer(arch, monitor="val/loss", mode="min", callbacks=[history], shards_itself=False,
                                val_check_interval=every, check_val_every_n_epoch=None)
        ckpt = stage.resume_from()
        if ckpt is None:
            trainer.validate(module, datamodule=dm, verbose=False)      # the curve's first point: step 0
        stage.fit(module, dm, ckpt_path=ckpt)
        if not history.val or history.val[-1][0] != trainer.global_step:
            trainer.validate(module, datamodule=dm, verbose=False)      # the final weights, not the best ones
        final = history.val[-1][1]
        if not is_rank_zero():        # under DDP, rank 0 alone exports and writes the run's files
            return float(final["val/loss"])
        try:
            export = str(export_mlm(student, stage.out / "export", tokenizer))
        except ExportError as e:      # e.g. head_dim*heads != hidden: the checkpoint is the run's only artefact
            export = None
            log.warning("%s: no transformers export/, only checkpoints/ (%s)", t.name, e)
        history.save(stage.out / "history.json")
        plot_curve(history, stage.out / "loss_curve.png", title=f"{t.name} {arch}")
        result = {
            "task": str(t.name), "objective": final["val/loss"], "heldout": final,
            "initial_heldout": history.val[0][1], "curve": [[s, m["val/loss"]] for s, m in history.val],
            "steps": int(trainer.global_step), "tokens": int(module.tokens_seen),
            "train_seconds": round(history.fit_seconds, 1),
            "tokens_per_second": round(history.fit_tokens / max(history.fit_seconds, 1e-9), 1),
            "arch": arch.to_dict(), "tuple": list(arch.tuple), "init": str(cfg.model.init),
            "params": {"net": arch.num_params(), "effective": arch.num_params(non_embedding=True)},
            "teacher": teacher_name, "teacher_mode": None if teacher is None else ("logits" if module.logits_kd else "hidden"),
            "loss_weights": {"alpha": module.alpha, "beta": module.beta, "temperature": module.T,
                             "hidden_weight": module.hidden_weight},
            "corpus": dm.stats, "export": export, "best_checkpoint": stage.best_checkpoint,
        }
        stage.finish(result, final={"objective": final["val/loss"]})
        log.info("%s: held-out loss %.4f -> %.4f after %d steps, %d tokens (%s)", t.name,
                 result["initial_heldout"]["val/loss"], final["val/loss"], result["steps"], result["tokens"], stage.out)
        return float(final["val/loss"])
