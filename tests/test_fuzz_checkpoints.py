"""Fuzzing heads, judge and quantized checkpoints: truncated or bit-flipped weights, an oversized
safetensors header, tensors of the wrong dtype or shape, a wrong fingerprint, config fields of the
wrong type. Each one loads (and then works) or is one error of the checkpoint's own type naming
the file; loading never writes into the directory."""

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from fuzz import fuzz
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from tigerdecode import quantize_model
from tigerdecode.heads import ControlHeads, HeadConfig, HeadsError
from tigerdecode.judge.model import Judge, JudgeConfig, JudgeError
from tigerdecode.model.load import fingerprint
from tigerdecode.quant.io import (
    QUANT_FILE,
    WEIGHTS_FILE,
    QuantFormatError,
    load_quantized,
    save_quantized,
)
from tiny_models import build_tiny_model

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**13) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.int32, torch.bool,
          torch.float64]


@pytest.fixture(scope="module")
def tiny(tokenizer):
    return build_tiny_model("llama", tokenizer, layers=2), tokenizer


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """Pristine checkpoints: heads (mlp, isotonic-sized calibrators), judge, int4 model."""
    model, tok = tiny
    root = tmp_path_factory.mktemp("ckpt")
    fp = fingerprint(model, tok)
    ControlHeads(HeadConfig([1, 2], 64, kind="mlp", mlp_hidden=8, outputs=["stop", "dev",
                                                                           "slot"]), fp).save(
        root / "heads")
    Judge(JudgeConfig([1, 2], 64, scalar_names=["mean_logprob", "min_logprob"]), fp).save(
        root / "judge")
    q = quantize_model(build_tiny_model("llama", tok, layers=2), 4, 32)
    save_quantized(q, tok, root / "quant")
    return root


def _leaves(d, prefix=()):
    """Every key path of a nested JSON object (objects only)."""
    for k, v in d.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _leaves(v, (*prefix, k))


@st.composite
def config_edit(draw, cfg: dict):
    """A copy of ``cfg`` with one key path replaced or deleted, or the text replaced."""
    kind = draw(st.sampled_from(["replace", "delete", "text"]))
    if kind == "text":
        return draw(st.binary(max_size=60) | st.sampled_from(
            [b"", b"[]", b"null", b'"x"', b"[" * 100_000, b'{"format": 1}']))
    cfg = json.loads(json.dumps(cfg))
    path = draw(st.sampled_from(sorted(_leaves(cfg))))
    node = cfg
    for k in path[:-1]:
        node = node[k]
    if kind == "delete":
        del node[path[-1]]
    else:
        node[path[-1]] = draw(json_value)
    return json.dumps(cfg).encode()


@st.composite
def weights_edit(draw, raw: bytes, state: dict):
    """Damaged safetensors bytes: truncated, bit-flipped, a huge header length, or a valid
    file whose tensors have another dtype or shape (or one missing / one extra)."""
    kind = draw(st.sampled_from(["truncate", "flip", "header", "retype", "reshape", "keys"]))
    if kind == "truncate":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if kind == "flip":
        data = bytearray(raw)
        for at in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            data[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "header":
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + raw[8:]
    name = draw(st.sampled_from(sorted(state)))
    new = dict(state)
    if kind == "retype":
        new[name] = state[name].to(draw(st.sampled_from(DTYPES)))
    elif kind == "reshape":
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        new[name] = torch.zeros(shape)
    else:
        if draw(st.booleans()):
            del new[name]
        else:
            new["extra.weight"] = torch.zeros(2)
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in new.items()})


def _damaged(saved: Path, tmp_path: Path, name: str, file: str, data: bytes) -> Path:
    work = tmp_path / name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(saved / name, work)
    (work / file).write_bytes(data)
    return work


def _load_or_refuse(load, work: Path, error):
    before = sorted(p.name for p in work.iterdir())
    try:
        out = load(work)
    except error as e:
        assert str(work) in str(e) and str(e).strip()
        out = None
    assert sorted(p.name for p in work.iterdir()) == before, "loading wrote into the directory"
    return out


STATES = {1: torch.randn(3, 64), 2: torch.randn(3, 64)}


def _heads_work(loaded):
    if loaded is not None:
        for p in loaded(STATES):
            assert p is None or (torch.isfinite(p).all() and ((p >= 0) & (p <= 1)).all())


@fuzz(40)
@given(data=st.data())
def test_heads_config_fuzz(saved, tiny, tmp_path, data):
    model, tok = tiny
    cfg = json.loads((saved / "heads" / "config.json").read_text())
    work = _damaged(saved, tmp_path, "heads", "config.json", data.draw(config_edit(cfg)))
    _heads_work(_load_or_refuse(lambda p: ControlHeads.load(p, model=model, tokenizer=tok),
                                work, HeadsError))


@fuzz(40)
@given(data=st.data())
def test_heads_weights_fuzz(saved, tiny, tmp_path, data):
    model, tok = tiny
    raw = (saved / "heads" / "heads.safetensors").read_bytes()
    state = load_file(saved / "heads" / "heads.safetensors")
    work = _damaged(saved, tmp_path, "heads", "heads.safetensors",
                    data.draw(weights_edit(raw, state)))
    _heads_work(_load_or_refuse(lambda p: ControlHeads.load(p, model=model, tokenizer=tok),
                                work, HeadsError))


@fuzz(40)
@given(data=st.data(), which=st.sampled_from(["config.json", "judge.safetensors"]))
def test_judge_checkpoint_fuzz(saved, tiny, tmp_path, data, which):
    model, tok = tiny
    if which == "config.json":
        edit = config_edit(json.loads((saved / "judge" / "config.json").read_text()))
    else:
        raw = (saved / "judge" / which).read_bytes()
        edit = weights_edit(raw, load_file(saved / "judge" / which))
    work = _damaged(saved, tmp_path, "judge", which, data.draw(edit))
    _load_or_refuse(lambda p: Judge.load(p, model=model, tokenizer=tok), work, JudgeError)


@fuzz(25)
@given(data=st.data(), which=st.sampled_from([QUANT_FILE, WEIGHTS_FILE, "config.json"]))
def test_quantized_checkpoint_fuzz(saved, tmp_path, data, which):
    if which == WEIGHTS_FILE:
        raw = (saved / "quant" / which).read_bytes()
        edit = weights_edit(raw, load_file(saved / "quant" / which))
    else:
        cfg = json.loads((saved / "quant" / which).read_text())
        edit = config_edit(cfg)
    work = _damaged(saved, tmp_path, "quant", which, data.draw(edit))
    _load_or_refuse(load_quantized, work, QuantFormatError)


@pytest.mark.parametrize("field, value", [("vocab_size", 5), ("tokenizer_hash", "0" * 16),
                                          ("architecture", "GPT2LMHeadModel")])
def test_a_wrong_fingerprint_names_both(saved, tiny, tmp_path, field, value):
    model, tok = tiny
    for name, cls, error in [("heads", ControlHeads, HeadsError), ("judge", Judge, JudgeError)]:
        cfg = json.loads((saved / name / "config.json").read_text())
        cfg["fingerprint"][field] = value
        work = _damaged(saved, tmp_path, name, "config.json", json.dumps(cfg).encode())
        with pytest.raises(error, match="was trained for .* but the model is"):
            cls.load(work, model=model, tokenizer=tok)


def test_a_config_asking_for_a_huge_layer_fails_before_allocating(saved, tmp_path):
    cfg = json.loads((saved / "heads" / "config.json").read_text())
    cfg["head"]["hidden_size"] = 10**12  # 4 TB of feat_mean if it were built
    work = _damaged(saved, tmp_path, "heads", "config.json", json.dumps(cfg).encode())
    with pytest.raises(HeadsError, match="expected"):
        ControlHeads.load(work)


def test_wrong_dtype_and_non_finite_tensors_are_named(saved, tmp_path):
    state = load_file(saved / "heads" / "heads.safetensors")
    for bad, words in [(state["feat_mean"].to(torch.int32), "floating-point"),
                       (torch.full_like(state["feat_mean"], float("nan")), "NaN")]:
        work = tmp_path / "heads"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(saved / "heads", work)
        save_file({**state, "feat_mean": bad}, work / "heads.safetensors")
        with pytest.raises(HeadsError, match=words):
            ControlHeads.load(work)
