"""data.passage_fit=select: a long passage keeps its sentences that share the rarest words with the question,
in order, within the token budget; the question and answer are never shortened; what fits is left alone."""
from __future__ import annotations

import pytest

from bortlab.data.passage_fit import fit_passages, split_sentences

FILLER = [f"The committee met again on day {i} and talked about the weather at length." for i in range(12)]


@pytest.fixture(scope="module")
def multirc_root(superglue_root):
    if not (superglue_root / "superglue" / "MultiRC" / "val.jsonl").exists():
        pytest.skip(f"the MultiRC dev set is not under {superglue_root}")
    return superglue_root


def test_sentences_split_at_their_ends_and_keep_closing_quotes():
    text = 'He said "Stop!" Then he left. Was it 3.5 km? Yes (mostly.) The end'
    assert split_sentences(text) == ['He said "Stop!"', "Then he left.", "Was it 3.5 km?", "Yes (mostly.)", "The end"]


def test_the_sentence_with_the_rare_question_word_is_kept_where_cutting_loses_it(tokenizer):
    evidence = "The treasure was finally found buried in Zanzibar under an old fig tree."
    passage = " ".join(FILLER[:9] + [evidence] + FILLER[9:])
    query = "Where was the treasure found? Zanzibar"
    max_length = 64
    fitted = fit_passages([passage], [query], tokenizer, max_length)[0]
    assert evidence in fitted
    cut = tokenizer.decode(tokenizer(passage, query, truncation="only_first", max_length=max_length)["input_ids"])
    assert "zanzibar" not in cut.split("[SEP]")[0]          # what `cut` would have fed the model
    kept, sentences = split_sentences(fitted), split_sentences(passage)
    order = [sentences.index(s) for s in kept]
    assert order == sorted(order) and len(kept) > 1         # a subset of the passage, in the passage's order
    assert len(tokenizer(fitted, query)["input_ids"]) <= max_length


def test_real_multirc_pairs_fit_without_truncation_and_short_ones_are_untouched(tokenizer, multirc_root):
    from bortlab.data import read_split
    from bortlab.data.tasks import get_task

    task = get_task("superglue/multirc")
    rows = read_split(task.name, "dev", root=str(multirc_root))[:600]
    pairs = [task.inputs(r)[0] for r in rows]
    passages, queries = [a for a, _ in pairs], [b for _, b in pairs]
    max_length = 256
    fitted = fit_passages(passages, queries, tokenizer, max_length)
    full = [len(ids) for ids in tokenizer(passages, queries)["input_ids"]]
    got = [len(ids) for ids in tokenizer(fitted, queries)["input_ids"]]
    assert all(n <= max_length for n in got)                # exact for WordPiece: nothing left to truncate
    assert all(f == p for f, p, n in zip(fitted, passages, full) if n <= max_length)
    changed = [(f, p) for f, p, n in zip(fitted, passages, full) if n > max_length]
    assert len(changed) > 300                               # most MultiRC passages pass 256 tokens
    for f, p in changed:
        assert set(split_sentences(f)) <= set(split_sentences(p))
    # the budget is used: each fitted pair is within a sentence's length of the cap
    assert sum(g for g, n in zip(got, full) if n > max_length) / len(changed) > max_length - 40


def test_datamodule_select_keeps_the_question_and_answer_whole(tokenizer, multirc_root):
    from bortlab.data.datamodule import TaskDataModule

    dms = {fit: TaskDataModule("superglue/multirc", tokenizer, root=str(multirc_root), max_length=128,
                               passage_fit=fit) for fit in ("cut", "select")}
    from bortlab.data import read_split

    rows = read_split("superglue/multirc", "dev", root=str(multirc_root))[:50]
    feats = {fit: dm.encode_rows(rows) for fit, dm in dms.items()}
    for r, cut, sel in zip(rows, feats["cut"], feats["select"]):
        query = tokenizer(f"{r['question']} {r['answer']}", add_special_tokens=False)["input_ids"]
        for f in (cut, sel):
            assert len(f["input_ids"]) <= 128
            assert f["input_ids"][-len(query) - 1 : -1] == query    # [CLS] passage [SEP] question answer [SEP]
        assert cut["input_ids"] != sel["input_ids"]                 # every MultiRC passage passes 128 tokens


def test_a_bad_passage_fit_names_the_choices(tokenizer):
    from bortlab.config import SetupError
    from bortlab.data.datamodule import TaskDataModule

    with pytest.raises(SetupError, match="data.passage_fit='middle' is not one of cut, select"):
        TaskDataModule("superglue/multirc", tokenizer, passage_fit="middle")
