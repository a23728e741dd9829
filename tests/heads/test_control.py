import json

import numpy as np
import pytest
import torch

from tigerdecode.heads import Calibrator, ControlHeads, HeadConfig, HeadsError
from tigerdecode.model.load import fingerprint
from tiny_models import build_tiny_model


def make_heads(model, tok, **kw):
    cfg = HeadConfig(layers=[2, 3], hidden_size=64, **kw)
    return ControlHeads(cfg, fingerprint(model, tok))


def test_forward_shapes_and_ranges(tiny_llama):
    model, tok = tiny_llama
    heads = make_heads(model, tok, kind="mlp")
    states = {2: torch.randn(5, 64), 3: torch.randn(5, 64)}
    p_stop, p_dev, p_slot = heads(states)
    assert p_stop.shape == p_dev.shape == (5,)
    assert ((p_stop > 0) & (p_stop < 1)).all()
    with pytest.raises(KeyError, match="lack"):
        heads({2: torch.randn(5, 64)})


def test_save_load_round_trip_with_calibration(tiny_llama, tmp_path):
    model, tok = tiny_llama
    heads = make_heads(model, tok)
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-2 * z))).astype(float)
    heads.calibrators["dev"].fit(z, y, "isotonic")
    heads.calibrators["stop"].fit(z, y, "platt")
    states = {2: torch.randn(7, 64), 3: torch.randn(7, 64)}
    before = heads(states)
    heads.save(tmp_path / "h", metrics={"auroc": 0.9})
    loaded = ControlHeads.load(tmp_path / "h", model=model, tokenizer=tok)
    after = loaded(states)
    torch.testing.assert_close(before[0], after[0])
    torch.testing.assert_close(before[1], after[1])
    assert json.loads((tmp_path / "h" / "metrics.json").read_text()) == {"auroc": 0.9}
    assert not list(tmp_path.glob(".h.tmp-*"))


def test_isotonic_matches_sklearn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    z = rng.normal(size=300)
    y = (rng.random(300) < 1 / (1 + np.exp(-z))).astype(float)
    cal = Calibrator().fit(z, y, "isotonic")
    p = 1 / (1 + np.exp(-z))
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y).predict(p)
    np.testing.assert_allclose(cal(torch.tensor(z)).numpy(), ref, atol=1e-5)


def test_fingerprint_mismatch_names_both(tiny_llama, tokenizer, tmp_path):
    model, tok = tiny_llama
    make_heads(model, tok).save(tmp_path / "h")
    other = build_tiny_model("qwen2", tokenizer)
    with pytest.raises(HeadsError) as e:
        ControlHeads.load(tmp_path / "h", model=other, tokenizer=tokenizer)
    msg = str(e.value)
    assert "LlamaForCausalLM" in msg and "Qwen2ForCausalLM" in msg


@pytest.mark.parametrize("damage", ["no_config", "no_weights", "bad_json", "bad_weights"])
def test_missing_or_corrupt_files(tiny_llama, tmp_path, damage):
    model, tok = tiny_llama
    d = make_heads(model, tok).save(tmp_path / "h")
    if damage == "no_config":
        (d / "config.json").unlink()
    elif damage == "no_weights":
        (d / "heads.safetensors").unlink()
    elif damage == "bad_json":
        (d / "config.json").write_text("{")
    else:
        (d / "heads.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(HeadsError):
        ControlHeads.load(d)


def test_bad_config():
    with pytest.raises(ValueError, match="kind"):
        HeadConfig(layers=[1], hidden_size=8, kind="transformer")
    with pytest.raises(ValueError, match="layers"):
        HeadConfig(layers=[], hidden_size=8)
