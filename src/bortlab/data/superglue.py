"""SuperGLUE tasks, read from the release JSONL files (`<root>/<Task>/{train,val,test}.jsonl`, the AX sets as
`<root>/AX-b/AX-b.jsonl` and `<root>/AX-g/AX-g.jsonl`) or, with no local copy, from HF `aps/super_glue`.

Splits are "train", "dev" (file val.jsonl) and "test"; AX-b and AX-g have only "test" and are predicted
with the RTE model (`predict_with="superglue/rte"`); the release ships their labels, which rows keep.
Every row has "idx" and "label" (None where the file has none); other keys are the file's fields.

Rows and inputs per task (text pairs are (text_a, text_b); long passages come first and
`truncation="only_first"` cuts only them, never the question, answer or entity):
- BoolQ: (passage, question). CB, RTE, AX-g: (premise, hypothesis). AX-b: (sentence1, sentence2).
- COPA (2-way multiple choice): (premise + " What was the cause?" | " What happened as a result?", choice).
- MultiRC: one row per answer option with passage_idx, question_idx, answer_idx, paragraph, question,
  answer, label 0/1; input (paragraph, question + " " + answer); group = (passage_idx, question_idx).
- ReCoRD: one row per (query, candidate entity) with passage_idx, query_idx, passage, query, entity,
  answers (gold strings; None on test), label 1 if the entity is a gold answer; candidates are the
  distinct entity strings of the passage (offsets inclusive), sorted; input (passage with "@highlight"
  lines as "- " bullets, query with "@placeholder" replaced by the entity); group = (passage_idx, query_idx).
- WiC: the target word is wrapped in asterisks in each sentence at its character span [start, end):
  ("An emerging professional *class*.", "... showed real *class*.").
- WSC: one segment, the text re-joined on single spaces with span1 (the candidate referent) wrapped in
  asterisks and span2 (the pronoun) in hash signs: "... *anyone* who knew ... away from #him# .". The
  span indices count whitespace-separated words; where the release index does not point at the span
  text (a handful of rows), the nearest occurrence of the span text is marked instead.
- AX-g rows also carry "pair": rows 2k and 2k+1 (in idx order) are one male/female minimal pair.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from bortlab.data.io import DataError, default_root, load_hf_split, read_jsonl, task_dir
from bortlab.data.tasks import Task, register

_FILES = {"train": "train.jsonl", "dev": "val.jsonl", "test": "test.jsonl"}
_HF_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_NLI = ("entailment", "not_entailment")
_BOOL = ("false", "true")
_COPA_QUESTION = {"cause": "What was the cause?", "effect": "What happened as a result?"}


class _Missing(Exception):
    """A nested field is absent; the reader turns it into a DataError naming file and line."""


def _need(obj: dict, key: str, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise _Missing(f"missing field '{where}{key}'")
    return obj[key]


# ---- reading -----------------------------------------------------------------------------------------
def _read(task: Task, split: str, root) -> list[dict]:
    fname = f"{task.dirname}.jsonl" if task.dirname.startswith("AX-") else _FILES[split]
    d = task_dir(root, "superglue", task.dirname)
    path = (d if d is not None else Path(root or default_root() or ".") / task.dirname) / fname
    spec = _SPECS[task.name]
    if d is None or not path.is_file():
        hf_rows = load_hf_split(task.name, task.hf_dataset, _HF_SPLITS[split], "superglue", path, root)
        rows = [r for hf in hf_rows for r in spec.from_hf(hf)]
    else:
        labelled = split != "test"         # AX-b/AX-g (test only) have labels, but they are not required
        required = ("idx",) + spec.fields + (("label",) if labelled and spec.flat else ())
        rows = []
        for k, obj in enumerate(read_jsonl(path, required)):
            try:
                rows.extend(spec.from_file(obj, labelled))
            except _Missing as e:
                raise DataError(f"{path}:{_line_of(path, k)}: {e}. Re-download the file or fix that line.") from None
    if task.name == "superglue/axg":
        _pair_rows(rows, path)
    return rows


def _line_of(path: Path, k: int) -> int:
    # read_jsonl skips blank lines; find the k-th non-blank line only when reporting an error
    n = -1
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            n += bool(line.strip())
            if n == k:
                return lineno
    return k + 1


def _pair_rows(rows: list[dict], path: Path) -> None:
    rows.sort(key=lambda r: r["idx"])
    for i, r in enumerate(rows):
        r["pair"] = i // 2
        if i % 2 and r["hypothesis"] != rows[i - 1]["hypothesis"]:
            raise DataError(
                f"{path}: AX-g rows idx {rows[i - 1]['idx']} and {r['idx']} should form a male/female pair "
                "(consecutive rows, same hypothesis) but their hypotheses differ; gender parity cannot be "
                "computed. Use the unmodified release file AX-g.jsonl."
            )


# ---- per-task row construction -------------------------------------------------------------------------
class _Spec:
    """How one task's rows come from a release line (`from_file(obj, labelled)`) or an HF row (`from_hf`).
    `fields` are the required top-level fields of a line; `hf_fields` those copied from an HF row."""

    def __init__(self, fields, labels=(), hf_fields=None, from_file=None, from_hf=None, flat=True):
        self.fields, self.labels, self.flat = tuple(fields), labels, flat
        self.hf_fields = tuple(hf_fields or fields)
        self.from_file = from_file or self._flat_file
        self.from_hf = from_hf or self._flat_hf

    def _flat_file(self, obj: dict, labelled: bool) -> list[dict]:
        row = dict(obj)
        row["idx"] = int(row["idx"])           # AX-b stores idx as a string
        row.setdefault("label", None)
        return [row]

    def _flat_hf(self, hf: dict) -> list[dict]:
        row = {k: hf[k] for k in self.hf_fields}
        row["idx"] = int(hf["idx"])
        lab = hf.get("label", -1)              # HF ClassLabel index; -1 on test
        row["label"] = None if lab is None or lab < 0 else (self.labels[lab] if self.labels else int(lab))
        return [row]


def _wsc_file(obj: dict, labelled: bool) -> list[dict]:
    target = _need(obj, "target", "")
    row = {"idx": int(obj["idx"]), "text": obj["text"], "label": obj.get("label")}
    for k in _WSC_SPAN_FIELDS:
        row[k] = _need(target, k, "target.")
    return [row]


def _multirc_file(obj: dict, labelled: bool) -> list[dict]:
    passage = _need(obj, "passage", "")
    text = _need(passage, "text", "passage.")
    rows = []
    for q in _need(passage, "questions", "passage."):
        for a in _need(q, "answers", "passage.questions[]."):
            where = "passage.questions[].answers[]."
            rows.append({
                "passage_idx": int(obj["idx"]), "question_idx": int(_need(q, "idx", "passage.questions[].")),
                "answer_idx": int(_need(a, "idx", where)), "paragraph": text,
                "question": _need(q, "question", "passage.questions[]."), "answer": _need(a, "text", where),
                "label": int(_need(a, "label", where)) if labelled else a.get("label"),
            })
    return rows


def _multirc_hf(hf: dict) -> list[dict]:
    idx, lab = hf["idx"], hf.get("label", -1)
    return [{
        "passage_idx": int(idx["paragraph"]), "question_idx": int(idx["question"]), "answer_idx": int(idx["answer"]),
        "paragraph": hf["paragraph"], "question": hf["question"], "answer": hf["answer"],
        "label": None if lab is None or lab < 0 else int(lab),
    }]


def _record_rows(passage_idx, text, entities, query_idx, query, answers) -> list[dict]:
    return [{
        "passage_idx": passage_idx, "query_idx": query_idx, "passage": text, "query": query, "entity": e,
        "answers": answers, "label": None if answers is None else int(e in answers),
    } for e in entities]


def _record_file(obj: dict, labelled: bool) -> list[dict]:
    passage = _need(obj, "passage", "")
    text = _need(passage, "text", "passage.")
    ents = set()
    for e in _need(passage, "entities", "passage."):
        ents.add(text[_need(e, "start", "passage.entities[].") : _need(e, "end", "passage.entities[].") + 1])
    entities = sorted(ents)
    rows = []
    for qa in _need(obj, "qas", ""):
        answers = None
        if labelled or "answers" in qa:
            answers = sorted({_need(a, "text", "qas[].answers[].") for a in _need(qa, "answers", "qas[].")})
        rows += _record_rows(int(obj["idx"]), text, entities, int(_need(qa, "idx", "qas[].")),
                             _need(qa, "query", "qas[]."), answers)
    return rows


def _record_hf(hf: dict) -> list[dict]:
    answers = list(hf["answers"]) or None    # HF gives [] on test
    return _record_rows(int(hf["idx"]["passage"]), hf["passage"], sorted(set(hf["entities"])),
                        int(hf["idx"]["query"]), hf["query"], sorted(set(answers)) if answers else None)


# ---- inputs ----------------------------------------------------------------------------------------------
def _mark(text: str, start: int, end: int, marker: str = "*") -> str:
    return f"{text[:start]}{marker}{text[start:end]}{marker}{text[end:]}"


def _squash(s: str) -> str:
    return re.sub(r"[^0-9a-z]", "", s.lower())


def _locate(words: list[str], index: int, span: str) -> tuple[int, int]:
    """Word range [i, j) of `span` at or nearest to `index` (the release index is off for a few rows)."""
    n = max(1, len(span.split()))
    want = _squash(span)

    def at(i: int) -> bool:    # prefix match: "Emma's" carries the span "Emma"
        return 0 <= i <= len(words) - n and _squash("".join(words[i : i + n])).startswith(want)

    if not at(index):
        hits = [i for i in range(len(words)) if at(i)]
        index = min(hits, key=lambda i: abs(i - index)) if hits else min(max(index, 0), max(len(words) - n, 0))
    return index, min(index + n, len(words))


def _wsc_text(row: dict) -> str:
    words = row["text"].split()
    for key, marker in (("span1", "*"), ("span2", "#")):
        i, j = _locate(words, row[f"{key}_index"], row[f"{key}_text"])
        words[i] = marker + words[i]
        words[j - 1] = words[j - 1] + marker
    return " ".join(words)


def _record_passage(text: str) -> str:
    return text.replace("@highlight\n", "- ")


def _inputs(name: str, r: dict) -> list:
    if name == "boolq":
        return [(r["passage"], r["question"])]
    if name in ("cb", "rte", "axg"):
        return [(r["premise"], r["hypothesis"])]
    if name == "axb":
        return [(r["sentence1"], r["sentence2"])]
    if name == "copa":
        context = f"{r['premise']} {_COPA_QUESTION[r['question'].strip()]}"
        return [(context, r["choice1"]), (context, r["choice2"])]
    if name == "multirc":
        return [(r["paragraph"], f"{r['question']} {r['answer']}")]
    if name == "record":
        return [(_record_passage(r["passage"]), r["query"].replace("@placeholder", r["entity"]))]
    if name == "wic":
        return [(_mark(r["sentence1"], r["start1"], r["end1"]), _mark(r["sentence2"], r["start2"], r["end2"]))]
    if name == "wsc":
        return [(_wsc_text(r), None)]
    raise KeyError(name)


def _target(labels: tuple, r: dict):
    lab = r.get("label")
    if lab is None:
        return None
    if isinstance(lab, bool):
        return int(lab)
    if isinstance(lab, str):
        return labels.index(lab)
    return int(lab)


# ---- the table -------------------------------------------------------------------------------------------
_WSC_SPAN_FIELDS = ("span1_index", "span1_text", "span2_index", "span2_text")
_SPECS: dict[str, _Spec] = {
    "superglue/boolq": _Spec(("question", "passage"), labels=(False, True)),
    "superglue/cb": _Spec(("premise", "hypothesis"), labels=("entailment", "contradiction", "neutral")),
    "superglue/copa": _Spec(("premise", "choice1", "choice2", "question")),
    "superglue/multirc": _Spec(("passage", "idx"), from_file=_multirc_file, from_hf=_multirc_hf, flat=False),
    "superglue/record": _Spec(("passage", "qas", "idx"), from_file=_record_file, from_hf=_record_hf, flat=False),
    "superglue/rte": _Spec(("premise", "hypothesis"), labels=_NLI),
    "superglue/wic": _Spec(("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2"), labels=(False, True)),
    # the release nests the spans under "target"; HF flattens them
    "superglue/wsc": _Spec(("text", "target"), labels=(False, True), hf_fields=("text",) + _WSC_SPAN_FIELDS,
                           from_file=_wsc_file),
    "superglue/axb": _Spec(("sentence1", "sentence2"), labels=_NLI),
    "superglue/axg": _Spec(("premise", "hypothesis"), labels=_NLI),
}


def _register(short, dirname, kind, metrics, labels, hf_config, max_length, truncation="longest_first",
              readout="argmax", submission_format="jsonl", **kw):
    return register(Task(
        name=f"superglue/{short}", benchmark="superglue", kind=kind, metrics=metrics, reader=_read,
        inputs=partial(_inputs, short), target=partial(_target, labels), labels=labels, dirname=dirname,
        max_length=max_length, truncation=truncation, hf_dataset=("aps/super_glue", hf_config),
        readout=readout, submission_name=f"{dirname}.jsonl", submission_format=submission_format, **kw,
    ))


def _question_of(r: dict):
    return (r["passage_idx"], r["question_idx"])


def _query_of(r: dict):
    return (r["passage_idx"], r["query_idx"])


def _pair_of(r: dict):
    return r["pair"]


def _entity_of(r: dict) -> str:
    return r["entity"]


def _answers_of(r: dict) -> list:
    return r["answers"] or []


_AX = dict(splits=("test",), dev_splits=(), test_splits=("test",), predict_with="superglue/rte")
# How the leaderboard spells labels where it differs from the files (the authors' jiant toolkit): WSC as
# Python booleans, COPA's choice and MultiRC's answer label as integers
_PY_BOOL = ("False", "True")
_INDEX = (0, 1)

# max_length: the tokenised cap; passages beyond it are cut from their end (only_first). BoolQ passages are
# ~100 words (99% under ~300), MultiRC ~260 words (max ~420), ReCoRD and RACE articles often pass 400.
BOOLQ = _register("boolq", "BoolQ", "classification", ("accuracy",), _BOOL, "boolq", 384, "only_first")
CB = _register("cb", "CB", "classification", ("accuracy", "macro_f1"), ("entailment", "contradiction", "neutral"), "cb", 256)
COPA = _register("copa", "COPA", "multiple_choice", ("accuracy",), ("choice1", "choice2"), "copa", 64, num_choices=2,
                 submission_labels=_INDEX)
# MultiRC: F1a is binary F1 over all answer options, EM is per question (`group`); the submission nests the
# answers of each question under their passage
MULTIRC = _register("multirc", "MultiRC", "classification", ("f1a", "em"), ("0", "1"), "multirc", 512, "only_first",
                    group=_question_of, submission_format="jsonl_nested", submission_labels=_INDEX,
                    submission_keys=(("idx", "passage_idx"), ("idx", "question_idx"), ("idx", "answer_idx")))
# ReCoRD: candidates compete within their query; the best-scoring entity is the answer, scored by EM and token F1
# against the gold answer strings and submitted as {"idx": query idx, "label": entity}
RECORD = _register("record", "ReCoRD", "classification", ("f1", "em"), ("0", "1"), "record", 512, "only_first",
                   group=_query_of, readout="group_best", scored_by=("answer_f1", "answer_em"),
                   candidate=_entity_of, gold_answers=_answers_of, submission_keys=(("idx", "query_idx"),))
RTE = _register("rte", "RTE", "classification", ("accuracy",), _NLI, "rte", 256)
WIC = _register("wic", "WiC", "classification", ("accuracy",), _BOOL, "wic", 128)
WSC = _register("wsc", "WSC", "classification", ("accuracy",), _BOOL, "wsc", 192, submission_labels=_PY_BOOL)
AXB = _register("axb", "AX-b", "classification", ("mcc",), _NLI, "axb", 256, **_AX)
# AX-g: gender parity = share of male/female minimal pairs (`group`) whose two predictions agree
AXG = _register("axg", "AX-g", "classification", ("accuracy", "gender_parity"), _NLI, "axg", 128, group=_pair_of,
                **_AX)

# registers the JSONL submission formats with bortlab.data.submission
from bortlab.data import superglue_submission as _submission  # noqa: E402,F401
