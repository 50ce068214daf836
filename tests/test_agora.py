"""Agora on rows: text fields, labels, hold-out, transformations, labellers, and the callback end to end on a
synthetic task where the training set is not representative (it never shows half of the cue words)."""
import json
import random

import lightning as L
import pytest
import torch
from torch import nn

from bortlab.agora import AgoraCallback, DropSwap, Labeller, NearestNeighbour, build_transform
from bortlab.agora import rows as R
from bortlab.agora.labellers import load_labeller, match_labels
from bortlab.config import SetupError
from bortlab.data.datamodule import TaskDataModule
from bortlab.data.tasks import Task, get_task, register
from bortlab.models.finetune import FineTuneModule

# ---- a synthetic task: the label is carried by one cue word; train only ever shows half of the cues ----
POS_SEEN, POS_NEW = ["excellent", "wonderful", "superb"], ["delightful", "marvelous", "splendid"]
NEG_SEEN, NEG_NEW = ["terrible", "awful", "horrible"], ["dreadful", "atrocious", "abysmal"]
FILLER = "the a movie film plot actor scene story was is it this that very quite really and but with".split()


def _sentence(rng, cue):
    words = [rng.choice(FILLER) for _ in range(rng.randint(5, 9))]
    words.insert(rng.randrange(len(words) + 1), cue)
    return " ".join(words)


def _rows(n, seen, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = i % 2
        cues = (POS_SEEN if seen else POS_NEW) if y else (NEG_SEEN if seen else NEG_NEW)
        out.append({"idx": i, "text": _sentence(rng, rng.choice(cues)), "other": "movie review",
                    "label": ("negative", "positive")[y]})
    return out


SPLITS = {"train": _rows(120, True, 0), "agora_dev": _rows(60, False, 1), "dev": _rows(200, False, 2)}
SYNTH = register(Task(
    name="test/agora_synth", benchmark="test", kind="classification", metrics=("accuracy",),
    reader=lambda task, split, root: [dict(r) for r in SPLITS[split]],
    inputs=lambda r: [(r["other"], r["text"])], target=lambda r: None if r["label"] is None else ("negative", "positive").index(r["label"]),
    labels=("negative", "positive"), splits=("train", "agora_dev", "dev"), dev_splits=("dev",), test_splits=(),
    max_length=32))


class Oracle(Labeller):
    """The true rule: right on every row that still has a cue word, a coin toss otherwise."""
    name = "oracle"

    def probs(self, rows):
        out = []
        for r in rows:
            words = set(r["text"].split())
            pos, neg = bool(words & set(POS_SEEN + POS_NEW)), bool(words & set(NEG_SEEN + NEG_NEW))
            out.append([0.05, 0.95] if pos and not neg else [0.95, 0.05] if neg and not pos else [0.5, 0.5])
        return torch.tensor(out)


class BagOfWords(nn.Module):
    """A tiny student: mean of word embeddings -> linear. It knows nothing about words it never trained on."""

    def __init__(self, vocab, dim=16):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        m = attention_mask.unsqueeze(-1).float()
        return self.out((self.word_embeddings(input_ids) * m).sum(1) / m.sum(1))


def _fit(tokenizer, tmp_path, callback=None, epochs=None, seed=0, steps=160):
    L.seed_everything(seed)
    dm = TaskDataModule(SYNTH, tokenizer, batch_size=16, seed=seed)
    module = FineTuneModule(BagOfWords(len(tokenizer)), SYNTH, lr=5e-2, warmup_ratio=0.0)
    # a fixed step budget: Agora's rows make epochs longer, and the lr schedule is sized on max_steps
    trainer = L.Trainer(max_epochs=epochs or 1000, max_steps=steps if epochs is None else -1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback] if callback else [],
                        default_root_dir=str(tmp_path), num_sanity_val_steps=0, check_val_every_n_epoch=10**6)
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm, verbose=False)
    return module.last_metrics["val/accuracy"], dm, trainer


# ---- rows ---------------------------------------------------------------------------------------------
def test_text_fields_follow_the_tasks_inputs():
    assert R.text_fields(get_task("glue/rte"), {"idx": 0, "sentence1": "A b.", "sentence2": "C d.", "label": "entailment"}) == ["sentence1", "sentence2"]
    cb = {"idx": 0, "premise": "It rained.", "hypothesis": "It was wet.", "label": "neutral"}
    assert R.text_fields(get_task("superglue/cb"), cb) == ["premise", "hypothesis"]
    copa = {"idx": 0, "premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause", "label": 0}
    assert R.text_fields(get_task("superglue/copa"), copa) == ["premise", "choice1", "choice2"]   # not "question"


@pytest.mark.parametrize("name", ["glue/rte", "superglue/cb", "superglue/boolq", "superglue/copa", "glue/mrpc"])
def test_set_label_round_trips_through_task_target(name):
    task = get_task(name)
    for y in range(len(task.labels) or 2):
        assert task.target(R.set_label(task, {"label": None}, y)) == y


def test_unsupported_tasks_are_refused_with_the_reason():
    with pytest.raises(SetupError, match="offsets"):
        R.check_task(get_task("superglue/wic"))
    with pytest.raises(SetupError, match="regression"):
        R.check_task(get_task("glue/stsb"))


def test_holdout_is_stratified_disjoint_and_seeded():
    task = get_task("superglue/cb")
    rows = [{"label": lab} for lab in ["entailment"] * 50 + ["contradiction"] * 40 + ["neutral"] * 10]
    keep, held = R.stratified_holdout(task, rows, 0.2, seed=3)
    assert sorted(keep + held) == list(range(100)) and not set(keep) & set(held)
    assert [sum(task.target(rows[i]) == c for i in held) for c in range(3)] == [10, 8, 2]
    assert R.stratified_holdout(task, rows, 0.2, seed=3) == (keep, held)
    assert R.stratified_holdout(task, rows, 0.2, seed=4)[1] != held


# ---- transformations ----------------------------------------------------------------------------------
ROW = {"idx": 7, "premise": "The cat sat on the [MASK] mat [SEP] near the old house today.",
       "hypothesis": "<s> A dog is running quickly </s> in the park.", "label": "neutral", "genre": "fiction"}


def _check_structure(new, k):
    assert 0 < len(new) <= k and len({(r["premise"], r["hypothesis"]) for r in new}) == len(new)
    for r in new:
        assert (r["premise"], r["hypothesis"]) != (ROW["premise"], ROW["hypothesis"])
        assert r["idx"] == 7 and r["genre"] == "fiction" and r["label"] == "neutral"   # other fields untouched
        for special in ("[MASK]", "[SEP]"):
            assert special in r["premise"]
        assert "<s>" in r["hypothesis"] and "</s>" in r["hypothesis"]


def test_nearest_neighbour_replaces_words_by_embedding_neighbours(tokenizer):
    vocab = tokenizer.get_vocab()
    emb = torch.randn(len(tokenizer), 8, generator=torch.Generator().manual_seed(0))
    emb[vocab["house"]] = emb[vocab["home"]] + 1e-3            # make "home" the nearest word to "house"
    student = nn.Module()
    student.word_embeddings = nn.Embedding.from_pretrained(emb)
    t = NearestNeighbour(embedding="student", fraction=1.0, neighbours=1)
    t.bind(tokenizer, student=student)
    assert t.perturb(["A House."], random.Random(0)) == ["A Home."]       # case kept, punctuation kept
    t = NearestNeighbour(embedding="student", fraction=0.3)
    t.bind(tokenizer, student=student)
    _check_structure(t.generate(ROW, ["premise", "hypothesis"], 6, random.Random(0)), 6)


def test_dropswap_keeps_special_tokens_and_pairs(tokenizer):
    t = build_transform({"name": "dropswap", "p_drop": 0.3, "p_swap": 0.3, "embedding": "auto"})
    assert isinstance(t, DropSwap)
    t.bind(tokenizer)
    _check_structure(t.generate(ROW, ["premise", "hypothesis"], 5, random.Random(1)), 5)


def test_mlm_infilling_with_a_masked_lm(tokenizer, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64)
    BertForMaskedLM(cfg).save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    t = build_transform({"name": "mlm", "model": str(tmp_path / "mlm"), "fraction": 0.3})
    t.bind(tokenizer)
    new = t.generate(ROW, ["premise", "hypothesis"], 4, random.Random(0))
    _check_structure(new, 4)
    assert all(r["premise"].count("[MASK]") == 1 for r in new)    # the literal [MASK] of the text stays one


def test_transformation_errors_are_clear(minilm_dir):
    with pytest.raises(SetupError, match="choose one of"):
        build_transform({"name": "paraphrase"})
    with pytest.raises(SetupError, match="not options of any"):
        build_transform({"name": "nn", "neighbors": 3})
    with pytest.raises(SetupError, match="has no MLM head"):
        build_transform({"name": "mlm", "model": minilm_dir}).bind(None)


# ---- labellers ----------------------------------------------------------------------------------------
def _hf_classifier(path, tokenizer, id2label):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=len(id2label), id2label=dict(enumerate(id2label)),
                     label2id={v: k for k, v in enumerate(id2label)})
    BertForSequenceClassification(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_labeller_label_set_must_match_the_task(tokenizer, tmp_path, minilm_dir):
    cb, rte = get_task("superglue/cb"), get_task("glue/rte")
    two = _hf_classifier(tmp_path / "two", tokenizer, ["not_entailment", "entailment"])
    with pytest.raises(SetupError, match=r"predicts the labels \['not_entailment', 'entailment'\].*superglue/cb"):
        load_labeller({"path": two}, cb)
    lab = load_labeller({"path": two}, rte)             # same set, other order: matched by name
    assert lab.columns == [1, 0]
    rows = [{"sentence1": "A man sleeps.", "sentence2": "A man is awake.", "label": "not_entailment"}]
    p = lab.probs(rows)
    assert p.shape == (1, 2) and torch.allclose(p.sum(-1), torch.ones(1))
    generic = _hf_classifier(tmp_path / "generic", tokenizer, ["LABEL_0", "LABEL_1"])
    with pytest.raises(SetupError, match="labels=\\[...\\]"):
        load_labeller({"path": generic}, rte)
    assert load_labeller({"path": generic, "labels": ["entailment", "not_entailment"]}, rte).columns == [0, 1]
    with pytest.raises(SetupError, match="no trained classification head"):
        load_labeller({"path": minilm_dir}, rte)
    with pytest.raises(SetupError, match="agora.labeller.path is not set"):
        load_labeller({}, rte)
    assert match_labels(cb, ("Neutral", "entailment", "contradiction"), "x") == [1, 2, 0]


# ---- the callback end to end -------------------------------------------------------------------------
def test_agora_callback_improves_a_student_on_an_unrepresentative_train_set(tokenizer, tmp_path):
    base, _, _ = _fit(tokenizer, tmp_path / "base")
    cb = AgoraCallback({"dev": "agora_dev", "rounds": 3, "k": 6, "transform": {"name": "dropswap"}}, labeller=Oracle())
    agora, dm, trainer = _fit(tokenizer, tmp_path / "agora", cb)
    # the official dev split (scored) was never given to Agora; only its own agora_dev split was
    assert base < 0.7 and agora > 0.85 and agora - base > 0.2
    files = sorted(p.name for p in (tmp_path / "agora" / "agora").glob("round_*.jsonl"))
    assert files == ["round_1.jsonl", "round_2.jsonl", "round_3.jsonl"]
    log = [json.loads(line) for line in (tmp_path / "agora" / "agora" / "rounds.jsonl").read_text().splitlines()]
    assert [s["round"] for s in log] == [1, 2, 3] and log[0]["mistakes"] > log[-1]["mistakes"]
    assert log[0]["kept"] == log[0]["label_negative"] + log[0]["label_positive"] > 0 and log[0]["labeller_acc"] == 1.0
    added = sum(len(R.read_jsonl(tmp_path / "agora" / "agora" / f)) for f in files)
    assert len(dm.rows["train"]) == 120 + added
    summary = json.loads((tmp_path / "agora" / "agora" / "summary.json").read_text())
    assert summary["honest"] and summary["agora_dev_split"] == "agora_dev" and summary["rounds_done"] == 3

    # restarting in the same directory re-reads the round files instead of generating new ones
    stamp = {f: (tmp_path / "agora" / "agora" / f).read_text() for f in files}
    cb2 = AgoraCallback({"dev": "agora_dev", "rounds": 3, "k": 6, "transform": {"name": "dropswap"}}, labeller=Oracle())
    _, dm2, _ = _fit(tokenizer, tmp_path / "agora", cb2, epochs=1)
    assert cb2.rounds_done == 3 and len(dm2.rows["train"]) == 120 + added
    assert {f: (tmp_path / "agora" / "agora" / f).read_text() for f in files} == stamp


def test_holdout_dev_keeps_the_official_dev_unseen(tokenizer, tmp_path):
    cb = AgoraCallback({"dev": "holdout", "holdout_fraction": 0.25, "rounds": 1, "k": 2, "final_round": True,
                        "transform": {"name": "dropswap"}}, labeller=Oracle())
    _, dm, _ = _fit(tokenizer, tmp_path, cb, epochs=2)
    held = dm.rows["agora_holdout"]
    assert len(held) == 30 and len(dm.rows["train"]) >= 90
    texts = {r["text"] for r in SPLITS["train"]}
    assert all(r["text"] in texts for r in held)                       # taken from train...
    assert not {r["text"] for r in held} & {r["text"] for r in dm.rows["train"] if "agora" not in r}
    sources = {r["agora"]["source"] for f in ("round_1.jsonl", "final.jsonl")
               for r in R.read_jsonl(tmp_path / "agora" / f)}
    assert sources <= {r["idx"] for r in held}                        # ...and only its rows were used
    assert json.loads((tmp_path / "agora" / "summary.json").read_text())["final_points"].endswith("final.jsonl")
    # rounds=0: the same hold-out, no points, still a summary (the bench's "holdout" arm)
    cb0 = AgoraCallback({"rounds": 0, "holdout_fraction": 0.25, "transform": {"name": "dropswap"}}, labeller=Oracle())
    _, dm0, _ = _fit(tokenizer, tmp_path / "r0", cb0, epochs=1)
    assert len(dm0.rows["train"]) == 90 and dm0.rows["agora_holdout"] == held
    assert json.loads((tmp_path / "r0" / "agora" / "summary.json").read_text())["rounds_done"] == 0


def test_errors_are_raised_before_training_starts(tokenizer, tmp_path, minilm_dir):
    cases = [({"labeller": {"kind": "checkpoint"}}, "agora.labeller.path is not set"),
             ({"transform": {"name": "mlm", "model": minilm_dir}, "labeller": {"kind": "student"}}, "has no MLM head"),
             ({"dev": "nonexistent", "labeller": {"kind": "student"}}, "agora.dev='nonexistent'")]
    for opts, msg in cases:
        cb = AgoraCallback({"rounds": 1, **opts})
        dm = TaskDataModule(SYNTH, tokenizer, batch_size=16)
        module = FineTuneModule(BagOfWords(len(tokenizer)), SYNTH)
        before = module.model.out.weight.detach().clone()
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[cb], default_root_dir=str(tmp_path))
        with pytest.raises(SetupError, match=msg):
            trainer.fit(module, datamodule=dm)
        assert trainer.global_step == 0 and torch.equal(module.model.out.weight, before)
    with pytest.raises(SetupError, match="unknown options"):
        AgoraCallback({"round": 3})


def test_student_labeller_and_config(tokenizer, tmp_path, compose):
    from hydra.utils import instantiate

    cfg = compose(["arch=tiny", "task=superglue/cb", "callbacks=agora", "agora.k=2", "agora.labeller.kind=student",
                   "agora.dev=agora_dev", "agora.rounds=1", "agora.transform.name=dropswap", "seed=5"])
    assert cfg.callbacks.checkpoint.enabled and cfg.trainer.reload_dataloaders_every_n_epochs == 1
    cb = instantiate(cfg.callbacks.extra.agora)
    assert isinstance(cb, AgoraCallback) and cb.k == 2 and cb.seed == 5
    _fit(tokenizer, tmp_path, cb, epochs=1)
    rows = R.read_jsonl(tmp_path / "agora" / "round_1.jsonl")
    assert rows and all(r["agora"]["labeller"] == "student" for r in rows)


def test_rebuilt_train_loaders_shuffle_anew_each_epoch(tokenizer):
    # Agora rebuilds the train loader every epoch; each rebuild must not replay epoch 0's order
    from types import SimpleNamespace

    dm = TaskDataModule(SYNTH, tokenizer, batch_size=8, group_by_length=False)
    orders = []
    for epoch in (0, 1, 0):
        dm.trainer = SimpleNamespace(current_epoch=epoch)
        orders.append([i for b in dm._loader("train", train=True).batch_sampler for i in b])
    assert orders[0] != orders[1] and orders[0] == orders[2]


def test_bad_agora_options_surface_as_setup_errors_from_the_config(tmp_path, compose):
    # through build_callbacks (hydra.utils.instantiate): the SetupError itself, not Hydra's wrapper
    from bortlab.tracking import build_callbacks

    cfg = compose(["arch=tiny", "task=superglue/cb", "callbacks=agora", "agora.transform.name=paraphrase"])
    with pytest.raises(SetupError, match="agora.transform.name='paraphrase'"):
        build_callbacks(cfg, tmp_path, monitor="val/accuracy", mode="max")


def test_a_bortlab_run_as_labeller(tmp_path, compose, data_root):
    """A run directory written by train.py labels rows of any task with its label set, and is refused, before
    training, by a task with another label set."""
    from omegaconf import OmegaConf

    from bortlab.run import run

    cfg = compose(["arch=tiny", "task=glue/rte", f"data.root={data_root}", "trainer.max_steps=1",
                   "trainer.limit_val_batches=1", "task.max_length=32", "predict=false", "logger=none",
                   "trainer.enable_progress_bar=false", f"+output_dir={tmp_path}"])
    run(cfg)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")      # what Hydra writes next to every run
    lab = load_labeller({"path": str(tmp_path)}, get_task("superglue/rte"))   # same labels, other task
    p = lab.probs([{"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": None}])
    assert p.shape == (1, 2) and lab.embedding_source() is not None
    with pytest.raises(SetupError, match=r"labeller .* predicts the labels \['entailment', 'not_entailment'\]"):
        load_labeller({"path": str(tmp_path / "checkpoints" / "last.ckpt")}, get_task("superglue/cb"))
    # it saw glue/rte's train split (which holds any Agora hold-out cut from it), not superglue/rte's
    same = load_labeller({"path": str(tmp_path)}, get_task("glue/rte"))
    assert same.saw_train_of(get_task("glue/rte")) and not lab.saw_train_of(get_task("superglue/rte"))
    from bortlab.agora.labellers import Ensemble
    assert Ensemble([lab, same]).saw_train_of(get_task("glue/rte"))
