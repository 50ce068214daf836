"""Labellers: give Agora's new rows a label. A fine-tuned checkpoint, the student's own best snapshot, or an
ensemble of them; an optional confidence threshold drops rows the labeller is unsure about.

Every labeller returns class probabilities in the *task's* label order (`probs(rows)`), whatever order its
own head uses: labels are matched by name, and a labeller whose label set differs from the task's is refused
with a SetupError before training starts.

Checkpoints understood by `load_labeller`:
- a bortlab run directory (`outputs/<task>/<time>`: its `checkpoints/best.ckpt`, else `last.ckpt`) or one of
  its `.ckpt` files: the model is rebuilt from the run's `.hydra/config.yaml` and `metrics.json`, the label
  set comes from the task the checkpoint was trained on;
- a Hugging Face directory or hub id of a `*ForSequenceClassification` model: the label set is its
  `config.id2label`, or `agora.labeller.labels=[...]` when those are the generic LABEL_0, LABEL_1, ...
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from bortlab.config import SetupError
from bortlab.data.tasks import Task

log = logging.getLogger(__name__)


def logits_of(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch.get("token_type_ids"))
    return getattr(out, "logits", out)


@torch.no_grad()
def predict_rows(model: torch.nn.Module, dm, rows: Sequence[dict], batch_size: int = 64) -> torch.Tensor:
    """Logits of `rows` (in order) through `model`, tokenised and padded by the datamodule `dm`."""
    from bortlab.data.datamodule import Collator, _length

    if not rows:
        return torch.empty(0)
    feats = dm.encode_rows(rows)
    collate = Collator(dm.pad_id, dm.task)
    order = sorted(range(len(feats)), key=lambda i: -_length(feats[i]))   # similar lengths share a batch
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[Optional[torch.Tensor]] = [None] * len(feats)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            batch = collate([{**feats[i], "label": None} for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            for i, row_logits in zip(idx, logits_of(model, batch).float().cpu()):
                out[i] = row_logits
    finally:
        model.train(was_training)
    return torch.stack(out)


class Labeller:
    name = "labeller"
    trained_on: Optional[str] = None   # the bortlab task a checkpoint labeller was fine-tuned on, when known
    trained_rows = None                # its data.Selection: which train rows it saw (None: all of them)

    def saw_train_of(self, task: Task, selection=None) -> bool:
        """Was (a member of) this labeller fine-tuned on `task`'s own training split? Then a hold-out cut from
        that split was in its training data, and its accuracy there is optimistic. Not so when it trained on
        train − R and the student's rows (`selection`) come from the same reserve R."""
        if self.trained_on != task.name:
            return False
        mine = self.trained_rows
        return not (mine is not None and selection is not None and mine.use == "rest" and selection.use == "reserve"
                    and (mine.reserve, mine.reserve_seed) == (selection.reserve, selection.reserve_seed))

    def probs(self, rows: Sequence[dict]) -> torch.Tensor:
        raise NotImplementedError

    def embedding_source(self):
        """(tokenizer, input word-embedding matrix) for the nearest-neighbour transformation, or None."""
        return None

    def accuracy(self, task: Task, rows: Sequence[dict]) -> float:
        if not rows:
            return float("nan")
        gold = torch.tensor([task.target(r) for r in rows])
        return (self.probs(rows).argmax(-1) == gold).float().mean().item()


def label_rows(labeller: Labeller, task: Task, rows: Sequence[dict], threshold: float = 0.0, soft: bool = False):
    """(labelled rows kept, confidences of all rows): each row gets the labeller's argmax label; rows whose
    top probability is below `threshold` are dropped. With `soft`, each kept row also carries the labeller's
    probabilities as its soft target (trained with a KL term alone: soft weight 1)."""
    from bortlab.agora.rows import set_label
    from bortlab.data.datamodule import SOFT, SOFT_WEIGHT

    if not rows:
        return [], torch.empty(0)
    p = labeller.probs(rows)
    conf, y = p.max(-1)
    kept = []
    for r, c, lab, probs in zip(rows, conf.tolist(), y.tolist(), p.tolist()):
        if c >= threshold:
            new = set_label(task, r, int(lab))
            new["agora"] = {**new.get("agora", {}), "confidence": round(c, 4), "labeller": labeller.name}
            if soft:
                new[SOFT], new[SOFT_WEIGHT] = probs, 1.0
            kept.append(new)
    return kept, conf


def _segment_types(model) -> int:
    """How many token types the model embeds (bortlab: its Arch; transformers: its config); 2 if unknown."""
    arch = getattr(getattr(model, "encoder", None), "arch", None)
    if arch is not None:
        return arch.type_vocab_size
    return int(getattr(getattr(model, "config", None), "type_vocab_size", 2) or 0)


# ---- a model with a tokenizer ----------------------------------------------------------------------------
class ModelLabeller(Labeller):
    """A classifier (bortlab or transformers) with its own tokenizer; `columns[j]` = the model's output
    column that holds the task's label j."""

    def __init__(self, model, tokenizer, task: Task, columns: Sequence[int], name: str, max_length: Optional[int] = None,
                 trained_on: Optional[str] = None, passage_fit: str = "cut"):
        from bortlab.data.datamodule import TaskDataModule

        self.model, self.tokenizer, self.task, self.name = model.eval(), tokenizer, task, name
        self.trained_on = trained_on
        self.columns = list(columns)
        types = "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and _segment_types(model) > 1
        self._dm = TaskDataModule(task, tokenizer, max_length=max_length or task.max_length, use_token_types=types,
                                  passage_fit=passage_fit)

    @property
    def max_length(self) -> int:
        return self._dm.max_length

    @property
    def passage_fit(self) -> str:
        return self._dm.passage_fit

    def probs(self, rows: Sequence[dict]) -> torch.Tensor:
        logits = predict_rows(self.model, self._dm, rows)
        if self.task.kind == "classification":
            logits = logits[:, self.columns]
        return logits.softmax(-1)

    def embedding_source(self):
        from bortlab.agora.transforms import word_embeddings

        m = word_embeddings(self.model)
        return None if m is None else (self.tokenizer, m)


class StudentLabeller(Labeller):
    """The student's own best snapshot so far (by accuracy on Agora's dev set), kept in memory: labelling
    starts from the current student until a round has scored one."""

    name = "student"

    def __init__(self, dm):
        self.dm, self.snapshot, self.best = dm, None, float("-inf")

    def offer(self, model: torch.nn.Module, score: float) -> None:
        if score > self.best or self.snapshot is None:
            self.best = score
            self.snapshot = copy.deepcopy(model).cpu().eval()

    def probs(self, rows: Sequence[dict]) -> torch.Tensor:
        if self.snapshot is None:
            raise RuntimeError("StudentLabeller used before the student was offered")
        return predict_rows(self.snapshot, self.dm, rows).softmax(-1)


class Ensemble(Labeller):
    """The mean of its members' probabilities."""

    def __init__(self, members: Sequence[Labeller]):
        if not members:
            raise SetupError("agora.labeller.kind=ensemble needs agora.labeller.members=[{...}, {...}].")
        self.members = list(members)
        self.name = "ensemble(" + ",".join(m.name for m in members) + ")"

    def probs(self, rows: Sequence[dict]) -> torch.Tensor:
        return torch.stack([m.probs(rows) for m in self.members]).mean(0)

    def embedding_source(self):
        return next((s for m in self.members if (s := m.embedding_source()) is not None), None)

    def saw_train_of(self, task: Task, selection=None) -> bool:
        return any(m.saw_train_of(task, selection) for m in self.members)


# ---- label sets ---------------------------------------------------------------------------------------
def match_labels(task: Task, theirs: Sequence, source: str) -> list[int]:
    """Column of each of the task's labels in the labeller's output, matched by name (case-insensitive)."""
    norm = [str(x).strip().lower() for x in theirs]
    want = [str(x).strip().lower() for x in task.labels]
    if sorted(norm) != sorted(want):
        raise SetupError(
            f"The labeller {source} predicts the labels {list(theirs)}, but {task.name} has {list(task.labels)}. "
            f"Agora's labeller must have the task's label set: use a checkpoint fine-tuned on {task.name} (or a "
            f"task with the same labels), or, for a transformers checkpoint whose config names its labels "
            f"LABEL_0.., declare them in output order with agora.labeller.labels=[...].")
    return [norm.index(w) for w in want]


def load_bortlab(path: Path, task: Task, checkpoint: str = "best", what: str = "agora.labeller.path") -> ModelLabeller:
    from bortlab.finetune.checkpoint import load_finetuned

    run = load_finetuned(path, what=what, checkpoint=checkpoint)
    own_task, ckpt = run.task, run.checkpoint
    if own_task.kind != task.kind or (task.kind == "multiple_choice" and own_task.num_choices != task.num_choices):
        raise SetupError(f"The labeller {ckpt} was trained on {own_task.name} ({own_task.kind}) but the task is "
                         f"{task.name} ({task.kind}); its outputs cannot be {task.name}'s labels.")
    columns = (match_labels(task, own_task.labels, f"{ckpt} (trained on {own_task.name})")
               if task.kind == "classification" else [])
    from bortlab.data.subsample import Selection

    lab = ModelLabeller(run.model, run.tokenizer, task, columns, name=f"bortlab:{run.run_dir.name}",
                        max_length=run.cfg.data.get("max_length") or run.cfg.task.get("max_length"),
                        trained_on=own_task.name,
                        passage_fit=run.cfg.data.get("passage_fit", "cut"))   # runs from before the option: cut
    lab.trained_rows = Selection.from_cfg(run.cfg.data)       # runs from before data.reserve: all rows
    return lab


def load_hf(name: str, task: Task, labels: Optional[Sequence] = None) -> ModelLabeller:
    from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForSequenceClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
        cls = AutoModelForMultipleChoice if task.kind == "multiple_choice" else AutoModelForSequenceClassification
        model, info = cls.from_pretrained(name, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise SetupError(f"agora.labeller.path={name!r} could not be loaded as a transformers classifier "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from e
    head = [k for k in info.get("missing_keys", ()) if "classifier" in k or "score" in k]
    if head:
        raise SetupError(f"agora.labeller.path={name!r} has no trained classification head (missing {head[:2]}): "
                         f"it is a bare encoder, not a fine-tuned classifier. Fine-tune it first, e.g. "
                         f"python train.py arch=minilm task={task.name}, and pass that run directory.")
    columns: list[int] = []
    if task.kind == "classification":
        names = list(labels) if labels else [config.id2label[i] for i in range(config.num_labels)]
        if not labels and all(str(n).upper().startswith("LABEL_") for n in names):
            raise SetupError(f"agora.labeller.path={name!r} names its labels {names}: Agora cannot tell which is "
                             f"which of {list(task.labels)}. Declare them in output order with "
                             f"agora.labeller.labels=[...].")
        columns = match_labels(task, names, repr(name))
    return ModelLabeller(model, tokenizer, task, columns, name=f"hf:{Path(str(name)).name}")


def load_labeller(spec: Optional[dict], task: Task, dm=None, what: str = "agora.labeller.path") -> Labeller:
    """Build the labeller described by the `agora.labeller` node (kind: checkpoint | student | ensemble);
    `checkpoint: best | last` picks a bortlab run directory's best.ckpt (else last.ckpt) or its last.ckpt."""
    spec = dict(spec or {})
    kind = spec.get("kind", "checkpoint")
    if kind == "student":
        if dm is None:
            raise SetupError("agora.labeller.kind=student labels with the student itself; it needs the run's data.")
        return StudentLabeller(dm)
    if kind == "ensemble":
        return Ensemble([load_labeller(m, task, dm, what) for m in spec.get("members") or []])
    if kind != "checkpoint":
        raise SetupError(f"agora.labeller.kind={kind!r}: choose checkpoint, student or ensemble.")
    path = spec.get("path")
    if not path:
        raise SetupError(
            "agora.labeller.path is not set. Agora needs a second, trained model to label its new points: "
            f"fine-tune one first (python train.py arch=minilm task={task.name}) and pass its run directory "
            "(or checkpoints/last.ckpt, or a transformers classifier directory), or use agora.labeller.kind=student.")
    p = Path(str(path)).expanduser()
    if p.suffix == ".ckpt" or (p.is_dir() and not (p / "config.json").exists()):
        if not p.exists():
            raise SetupError(f"{what}={p}: no such checkpoint.")
        return load_bortlab(p, task, str(spec.get("checkpoint") or "best"), what)
    return load_hf(str(p) if p.exists() else str(path), task, spec.get("labels"))
