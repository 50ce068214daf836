"""bf16 and int8 inference stay faithful to fp32 on real text: the real MiniLM on real RTE pairs and on every
SST-2 dev sentence, compared with transformers' own fp32 hidden states at every real token."""
from __future__ import annotations

import pytest
import torch



@pytest.fixture(scope="module")
def reference(request, minilm_dir, tokenizer):
    """(inputs, transformers' fp32 hidden states): 48 RTE pairs, or the first 320 SST-2 sentences (where int8,
    before its outlier columns, had a token at cosine 0.986, its weakest on all 872)."""
    from transformers import AutoModel

    if request.param == "rte":
        pairs = request.getfixturevalue("rte_dev_pairs")[:48]
        texts = ([a for a, _ in pairs], [b for _, b in pairs])
    else:
        texts = (request.getfixturevalue("sst2_dev_sentences")[:320],)
    enc = tokenizer(*texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    with torch.no_grad():
        hf = AutoModel.from_pretrained(minilm_dir).eval()(**enc).last_hidden_state
    return enc, hf


@pytest.mark.parametrize("reference, precision, floor", [
    ("rte", "fp32", 0.99999), ("rte", "bf16", 0.999), ("rte", "int8", 0.99), ("sst2", "int8", 0.99)],
    indirect=["reference"])
def test_precisions_keep_hidden_states_of_real_text(minilm_dir, reference, precision, floor):
    from bortlab.models.hf import load_pretrained

    enc, hf = reference
    model = load_pretrained(minilm_dir, precision=precision).eval()     # fp32 loads in train mode
    with torch.inference_mode():
        ours = model(enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
    real = enc["attention_mask"].bool()
    cos = torch.nn.functional.cosine_similarity(ours.float()[real], hf[real], dim=-1)
    assert float(cos.min()) >= floor, (precision, float(cos.min()), float(cos.mean()))
    if precision == "bf16":
        assert ours.dtype == torch.bfloat16
    if precision == "int8":       # the layers' projections are int8 now, the embeddings are not
        from bortlab.models.int8 import Int8Linear, available

        if available():
            assert all(isinstance(getattr(model.layers[0], n), Int8Linear) for n in ("qkv", "attn_out", "ffn_in", "ffn_out"))
            assert model.layers[0].qkv.qweight.dtype == torch.int8
            assert len(model.layers[0].ffn_out.w_cols) > 0        # its large weight columns stay fp32
        else:                     # the torchao fallback: quantized weight tensors inside the Linears, but the FFN
            assert type(model.layers[0].qkv.weight.data) is not torch.Tensor     # output (no weight outlier columns)
            assert type(model.layers[0].ffn_out.weight.data) is torch.Tensor
        assert type(model.word_embeddings.weight.data) is torch.Tensor


def test_an_unknown_precision_is_a_setup_error(minilm_dir):
    from bortlab.config import SetupError
    from bortlab.models.hf import load_pretrained

    with pytest.raises(SetupError, match="precision='fp8' is not one of fp32, bf16, int8"):
        load_pretrained(minilm_dir, precision="fp8")


def test_a_run_scores_dev_and_predicts_test_in_its_eval_precision(tmp_path, compose, data_root):
    # eval.precision: the best model is scored again, as deployed; the submission comes from that model
    import json

    from bortlab.run import run

    common = ["arch=tiny", "task=glue/rte", f"data.root={data_root}", "trainer.max_steps=4", "data.batch_size=8", "task.max_length=48", "logger=none",
              "trainer.enable_progress_bar=false", "predict=true"]
    run(compose([*common, "eval.precision=bf16", f"+output_dir={tmp_path / 'bf16'}"]))
    m = json.loads((tmp_path / "bf16" / "metrics.json").read_text())
    assert m["eval_precision"] == "bf16" and set(m["dev_at_precision"]) == {"val/accuracy"}
    # the same 277 dev rows as the fp32 score, by the bf16 model: at most a few of them flip
    assert abs(m["dev_at_precision"]["val/accuracy"] - m["dev"]["val/accuracy"]) <= 5 / 277
    assert len((tmp_path / "bf16" / "submission" / "RTE.tsv").read_text().splitlines()) == 3000 + 1
    from bortlab.config import SetupError

    with pytest.raises(SetupError, match="eval.precision='int4'"):
        run(compose([*common, "eval.precision=int4", f"+output_dir={tmp_path / 'bad'}"]))


def test_bf16_mixed_training_on_cpu_tracks_fp32(tmp_path, compose, data_root):
    # autocast: the encoder's fused in-place projection would mix bf16 and fp32. Same seed, same batches: the
    # bf16-mixed run's training losses follow the fp32 run's to bf16 precision, and are not the same numbers
    import json

    from bortlab.run import run

    curves = {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / precision
        run(compose(["arch=tiny", "task=glue/sst2", f"data.root={data_root}", "trainer.max_steps=12", "data.batch_size=16",
                     "task.max_length=32", "trainer.limit_val_batches=1", f"trainer.precision={precision}",
                     "logger=none", "optim.lr=1e-3", "trainer.enable_progress_bar=false", "predict=false",
                     "trainer.log_every_n_steps=1", f"+output_dir={out}"]))
        curves[precision] = [loss for _, loss in json.loads((out / "history.json").read_text())["train"]]
    fp32, bf16 = curves["32-true"], curves["bf16-mixed"]
    assert len(fp32) == len(bf16) == 12
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.03 and fp32 != bf16


def _proc_cpu_flags() -> set[str]:
    # read here, not through bortlab: the check is against the kernel's own list of CPU features
    from pathlib import Path

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())


def test_trainer_precision_auto_is_bf16_only_where_the_cpu_has_it():
    from bortlab.training import training_precision

    flags = _proc_cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this system")
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    from bortlab.models.precision import native_bf16, native_int8

    assert native_bf16() == native and native_int8() == bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    assert training_precision({"precision": "auto", "accelerator": "cpu"})["precision"] == \
        ("bf16-mixed" if native else "32-true")
    # what the user set explicitly is kept, whatever the CPU
    for p in ("32-true", "bf16-mixed", "16-mixed"):
        assert training_precision({"precision": p, "accelerator": "cpu"})["precision"] == p


def test_explicit_bf16_on_a_cpu_without_it_warns_once(monkeypatch, caplog):
    import logging

    import bortlab.models.precision as prec
    from bortlab.training import training_precision

    monkeypatch.setattr(prec, "native_bf16", lambda device="cpu": False)
    monkeypatch.setattr(prec, "_warned", set())
    with caplog.at_level(logging.WARNING):
        training_precision({"precision": "bf16-mixed", "accelerator": "cpu"})
        training_precision({"precision": "bf16-mixed", "accelerator": "cpu"})
        training_precision({"precision": "32-true", "accelerator": "cpu"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "trainer.precision=bf16-mixed" in warnings[0] and "32-true" in warnings[0]
    caplog.clear()
    monkeypatch.setattr(prec, "native_int8", lambda: False)
    with caplog.at_level(logging.WARNING):
        prec.warn_if_emulated("int8", "precision=int8")
    assert "VNNI" in caplog.text and "precision=fp32" in caplog.text
    monkeypatch.setattr(prec, "native_bf16", lambda device="cpu": True)
    caplog.clear()
    training_precision({"precision": "bf16-true", "accelerator": "cpu"})
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_run_with_trainer_precision_auto_trains_in_the_resolved_precision(tmp_path, compose, data_root):
    import json

    from bortlab.run import run

    out = tmp_path / "auto"
    run(compose(["arch=tiny", "task=glue/sst2", f"data.root={data_root}", "trainer.max_steps=2", "data.batch_size=8",
                 "task.max_length=32", "trainer.limit_val_batches=1", "trainer.precision=auto", "logger=none",
                 "trainer.enable_progress_bar=false", "predict=false", f"+output_dir={out}"]))
    flags = _proc_cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this system")
    resolved = "bf16-mixed" if flags & {"avx512_bf16", "amx_bf16"} else "32-true"
    assert json.loads((out / "metrics.json").read_text())["trainer_precision"] == resolved
