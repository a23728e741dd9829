"""Heads packed as extra lm_head rows: the HF export loads with plain AutoModelForCausalLM,
keeps the original vocabulary's logits, and its extra rows give the heads' probabilities."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tigerdecode.engines.export import HEADS_JSON, export_hf, read_packed_hf
from tigerdecode.engines.packed import PACKED, PackedHeads, split_scores
from tigerdecode.heads.control import ControlHeads, HeadConfig, HeadsError
from tigerdecode.model.load import fingerprint, text_config
from tigerdecode.model.taps import HiddenStateTap, final_layer


def final_heads(model, tok, seed=0, calibration="platt"):
    """Random linear heads on the final normed state, with non-trivial standardisation and
    calibration, so folding them into rows is really exercised."""
    torch.manual_seed(seed)
    hidden = text_config(model).hidden_size
    h = ControlHeads(HeadConfig([final_layer(model)], hidden, calibration=calibration,
                                outputs=["stop", "dev", "slot"]), fingerprint(model, tok))
    with torch.no_grad():
        h.feat_mean.normal_(0, 0.1)
        h.feat_std.uniform_(0.5, 2.0)
        for o in h.config.outputs:
            h.nets[o].weight.normal_(0, 0.3)
            h.nets[o].bias.normal_(0, 1.0)
            h.calibrators[o].platt = torch.tensor([0.8, -0.3])
    return h.eval()


def test_hf_export_loads_plainly_and_gives_the_heads(tiny_model, tmp_path):
    arch, model, tok = tiny_model
    heads = final_heads(model, tok)
    V = model.get_output_embeddings().weight.shape[0]
    info = export_hf(model, tok, heads, tmp_path / "x")
    assert info["row_ids"] == [V, V + 1, V + 2] and (tmp_path / "x" / HEADS_JSON).is_file()
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path / "x").eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "x")
    assert len(tok2) == V + 3 and tok2.convert_tokens_to_ids("<|tigerdecode_dev|>") == V + 1
    packed = read_packed_hf(tmp_path / "x")
    ids = tok(["The capital of Japan is", "Once upon a"], return_tensors="pt", padding=True)
    with torch.no_grad(), HiddenStateTap(model, heads.layers) as tap:
        ref = model(**ids).logits
        want = heads.signals({k: v for k, v in tap.states.items()})
    with torch.no_grad():
        got_logits = m2(**ids).logits
    vocab, rows = split_scores(got_logits, packed)
    # the original vocabulary: the same weights, so the same logits (tied ones untied by copy)
    torch.testing.assert_close(vocab, ref, atol=1e-5, rtol=1e-5)
    got = packed.signals({PACKED: rows})
    for o in heads.config.outputs:
        torch.testing.assert_close(got[o], want[o], atol=1e-5, rtol=1e-4), (arch, o)
    # greedy continuation is unchanged when the head rows are cut off
    assert torch.equal(vocab.argmax(-1), ref.argmax(-1))


def test_only_linear_heads_on_the_final_state_can_be_packed(tiny_llama, tmp_path):
    model, tok = tiny_llama
    hidden = text_config(model).hidden_size
    h = ControlHeads(HeadConfig([2], hidden), fingerprint(model, tok))
    with pytest.raises(HeadsError, match="--layers final"):
        export_hf(model, tok, h, tmp_path / "x")
    h = ControlHeads(HeadConfig([final_layer(model)], hidden, kind="mlp"), fingerprint(model, tok))
    with pytest.raises(HeadsError, match="mlp heads"):
        export_hf(model, tok, h, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_packed_json_round_trip_and_errors(tiny_llama):
    model, tok = tiny_llama
    heads = final_heads(model, tok, calibration="isotonic")
    with torch.no_grad():
        for o in heads.config.outputs:
            heads.calibrators[o].method = "isotonic"
            heads.calibrators[o].iso_x = torch.tensor([0.0, 0.3, 1.0])
            heads.calibrators[o].iso_y = torch.tensor([0.1, 0.2, 0.9])
    packed, rows = PackedHeads.from_heads(heads, model, 100)
    again = PackedHeads.from_json(packed.to_json())
    s = torch.randn(4, 3)
    for o in packed.outputs:
        torch.testing.assert_close(again.signals({PACKED: s})[o], packed.signals({PACKED: s})[o])
    h = torch.randn(4, text_config(model).hidden_size)
    want = heads.signals({final_layer(model): h})
    got = packed.signals({PACKED: h @ torch.from_numpy(rows).T})
    for o in packed.outputs:
        torch.testing.assert_close(got[o], want[o], atol=1e-5, rtol=1e-4)
    with pytest.raises(HeadsError, match="corrupt"):
        PackedHeads.from_json('{"format": 1, "outputs": ["stop"]}')
    with pytest.raises(HeadsError, match="format"):
        PackedHeads.from_json('{"format": 9}')
    with pytest.raises(HeadsError, match="Load the exported model"):
        split_scores(torch.zeros(1, 50), packed)


def test_export_command(tiny_model_dir, tmp_path):
    """`tigerdecode export DIR --heads H --format hf` writes a loadable export; bad requests
    are one-line errors that say what to do."""
    from click.testing import CliRunner

    from tigerdecode.cli import main
    from tigerdecode.model.load import load_model

    model, tok = load_model(str(tiny_model_dir))
    final_heads(model, tok).save(tmp_path / "h")
    run = CliRunner().invoke
    r = run(main, ["export", str(tiny_model_dir), "--heads", str(tmp_path / "h"), "--format",
                   "hf", "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    assert '"row_ids"' in r.output and read_packed_hf(tmp_path / "x").outputs == [
        "stop", "dev", "slot"]
    r = run(main, ["export", str(tiny_model_dir), "--heads", str(tmp_path / "h"), "--format",
                   "gguf", "--out", str(tmp_path / "y.gguf")])
    assert r.exit_code != 0 and "needs the GGUF the model comes from" in r.output
    (tmp_path / "bad.gguf").write_bytes(b"GGUF but not really")
    r = run(main, ["export", str(tiny_model_dir), "--heads", str(tmp_path / "h"), "--format",
                   "gguf", "--gguf", str(tmp_path / "bad.gguf"), "--out", str(tmp_path / "y.gguf")])
    assert r.exit_code == 1 and "not a readable GGUF file" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "y.gguf").exists()
    ControlHeads(HeadConfig([2], text_config(model).hidden_size),
                 fingerprint(model, tok)).save(tmp_path / "h2")
    r = run(main, ["export", str(tiny_model_dir), "--heads", str(tmp_path / "h2"), "--format",
                   "hf", "--out", str(tmp_path / "z")])
    assert r.exit_code != 0 and "--layers final" in r.output and not (tmp_path / "z").exists()
    r = run(main, ["export", str(tiny_model_dir), "--format", "hf", "--out", str(tmp_path / "z")])
    assert r.exit_code != 0 and "pass --heads DIR" in r.output
