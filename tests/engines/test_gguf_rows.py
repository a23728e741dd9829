"""Appending head rows to a GGUF model: the original vocabulary's bytes (and so its logits)
unchanged, the new rows stored in the output matrix's type, metadata extended consistently,
clear errors, and an atomic write."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from tigerdecode.engines import gguf_rows  # noqa: E402
from tigerdecode.engines.gguf_rows import append_rows_gguf  # noqa: E402

Q = gguf.GGMLQuantizationType
VT = gguf.GGUFValueType
NAMES = ["<|tigerdecode_a|>", "<|tigerdecode_b|>", "<|tigerdecode_c|>"]
CHANGED_KEYS = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores",
                "llama.vocab_size"}


# --- fixtures ---------------------------------------------------------------------------------


def _encoded(rng, shape: tuple[int, int], qtype) -> np.ndarray:
    """Random values in ``qtype``; random bytes for types the gguf package cannot quantize."""
    try:
        return gguf.quants.quantize(rng.normal(size=shape).astype(np.float32), qtype)
    except NotImplementedError:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        return rng.integers(0, 255, size=(shape[0], shape[1] // block * size), dtype=np.uint8)


def write_small_gguf(path, *, embd_type=Q.F32, out_type=Q.F32, n_vocab=96, n_embd=64,
                     arch="llama", extra_kv=None, bias=False, seed=0):
    """A small hand-made GGUF (no transformer behind it) with a ``n_vocab`` vocabulary,
    token scores, assorted metadata types, a custom alignment and tensors of several ggml
    types. ``out_type=None`` leaves out ``output.weight`` (tied embeddings); ``raw_out``
    writes random bytes for an output type the gguf package cannot quantize."""
    rng = np.random.default_rng(seed)
    w = gguf_rows._writer_class()(str(path), arch)  # can also write an empty array
    w.add_custom_alignment(64)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_vocab_size(n_vocab)
    w.add_file_type(7)
    w.add_token_list([f"tok{i}" for i in range(n_vocab)])
    w.add_token_types([3 if i < 2 else 1 for i in range(n_vocab)])
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_tokenizer_model("llama")
    w.add_array("tiger.floats", [0.5, 1.25])
    w.add_bool("tiger.flag", True)
    w.add_key_value("tiger.empty", [], VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("tiger.u64", 2**40, VT.UINT64)
    for key, (value, vtype) in (extra_kv or {}).items():
        w.add_key_value(key, value, vtype)
    w.add_tensor("token_embd.weight", _encoded(rng, (n_vocab, n_embd), embd_type),
                 raw_dtype=embd_type)
    w.add_tensor("blk.0.attn_norm.weight", rng.normal(size=n_embd).astype(np.float32))
    w.add_tensor("blk.0.attn_q.weight", rng.normal(size=(n_embd, n_embd)).astype(np.float16))
    w.add_tensor("blk.0.ffn_up.weight", _encoded(rng, (128, n_embd), Q.Q4_0), raw_dtype=Q.Q4_0)
    w.add_tensor("output_norm.weight", rng.normal(size=n_embd).astype(np.float32))
    if out_type is not None:
        w.add_tensor("output.weight", _encoded(rng, (n_vocab, n_embd), out_type),
                     raw_dtype=out_type)
    if bias:
        w.add_tensor("output.bias", rng.normal(size=n_vocab).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def head_rows(k: int = 3, n_embd: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(k, n_embd)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory, tokenizer):
    """The project's tiny Llama GGUF (all F32, separate output) and its extended copy."""
    from gguf_writer import write_tiny_gguf

    root = tmp_path_factory.mktemp("gguf_rows")
    src, dst = root / "tiny.gguf", root / "tiny.heads.gguf"
    model = write_tiny_gguf(src, tokenizer)
    rows = head_rows(n_embd=model.config.hidden_size)
    info = append_rows_gguf(src, dst, rows, NAMES)
    return src, dst, rows, info, model


# --- checks -----------------------------------------------------------------------------------


def _row_bytes(t) -> np.ndarray:
    return np.ascontiguousarray(t.data).view(np.uint8).reshape(int(t.shape[1]), -1)


def _array(field) -> list:
    return field.contents() if field is not None else None


def check_extended(src, dst, rows, names, info):
    """Everything the new file must satisfy relative to its source."""
    r0, r1 = gguf.GGUFReader(str(src)), gguf.GGUFReader(str(dst))
    k = len(names)
    tokens0 = _array(r0.get_field("tokenizer.ggml.tokens"))
    v = len(tokens0)
    assert info["n_vocab_before"] == v and info["n_vocab_after"] == v + k
    assert info["row_ids"] == list(range(v, v + k))

    # metadata: the tokenizer arrays and vocab size extended, everything else equal
    assert _array(r1.get_field("tokenizer.ggml.tokens")) == tokens0 + names
    types0 = _array(r0.get_field("tokenizer.ggml.token_type"))
    assert _array(r1.get_field("tokenizer.ggml.token_type")) == types0 + [3] * k
    if r0.get_field("tokenizer.ggml.scores") is not None:
        scores = _array(r1.get_field("tokenizer.ggml.scores"))
        assert scores[:v] == _array(r0.get_field("tokenizer.ggml.scores"))
        assert all(s < -1e8 for s in scores[v:]) and len(scores) == v + k
    if r0.get_field("llama.vocab_size") is not None:
        assert r1.get_field("llama.vocab_size").contents() == v + k
    assert list(r1.fields) == list(r0.fields)  # same keys, same order
    for key, f0 in r0.fields.items():
        if key in CHANGED_KEYS or key.startswith("GGUF."):
            continue
        f1 = r1.fields[key]
        assert f1.types == f0.types, key
        assert f1.contents() == f0.contents(), key
        if f0.types[0] == VT.ARRAY:
            assert int(f1.parts[3][0]) == int(f0.parts[3][0]), key  # array item type
    assert r1.alignment == r0.alignment

    # tensors: all copied byte for byte except the two vocabulary matrices
    t0, t1 = {t.name: t for t in r0.tensors}, {t.name: t for t in r1.tensors}
    tied = "output.weight" not in t0
    assert list(t1) == [n for n0 in t0 for n in
                        ([n0, "output.weight"] if tied and n0 == "token_embd.weight" else [n0])]
    for name, a in t0.items():
        if name == "output.bias":  # a biased LM head: zero bias for the new rows
            assert t1[name].data.tolist() == a.data.tolist() + [0.0] * k
            continue
        if name in ("token_embd.weight", "output.weight"):
            continue
        b = t1[name]
        assert b.tensor_type == a.tensor_type and b.shape.tolist() == a.shape.tolist(), name
        assert np.asarray(b.data).tobytes() == np.asarray(a.data).tobytes(), name

    embd0, embd1 = t0["token_embd.weight"], t1["token_embd.weight"]
    assert embd1.tensor_type == embd0.tensor_type
    assert embd1.shape.tolist() == [embd0.shape[0], v + k]
    assert np.array_equal(_row_bytes(embd1)[:v], _row_bytes(embd0))
    assert not gguf.quants.dequantize(_row_bytes(embd1)[v:], embd1.tensor_type).any()

    out0 = t0["token_embd.weight" if tied else "output.weight"]
    out1 = t1["output.weight"]
    assert out1.tensor_type == out0.tensor_type and info["output_type"] == out0.tensor_type.name
    assert out1.shape.tolist() == [out0.shape[0], v + k]
    assert np.array_equal(_row_bytes(out1)[:v], _row_bytes(out0))  # bit-identical logits
    stored = gguf.quants.dequantize(_row_bytes(out1)[v:], out1.tensor_type)
    err = float(np.abs(stored.astype(np.float64) - rows).max())
    assert err == pytest.approx(info["max_row_error"], abs=1e-7)
    if out0.tensor_type == Q.F32:
        assert np.array_equal(stored, rows) and info["max_row_error"] == 0.0
        assert info["rows_quantized"] is False
    else:
        assert info["rows_quantized"] is True
    return r1


# --- tests ------------------------------------------------------------------------------------


def test_tiny_llama_f32_extended(tiny_pair):
    src, dst, rows, info, _ = tiny_pair
    check_extended(src, dst, rows, NAMES, info)
    assert info["output_type"] == "F32" and info["max_row_error"] == 0.0
    assert [p.name for p in dst.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("embd_type,out_type", [
    (Q.Q8_0, Q.Q4_1),   # untied, both quantized, different types
    (Q.Q4_1, None),     # tied: output.weight created from the embedding's Q4_1 bytes
    (Q.F16, None),      # tied, half precision
    (Q.Q6_K, Q.Q8_0),   # no Python Q6_K quantizer: the zero embedding rows are zero bytes
], ids=["q8_0-embd-q4_1-out", "q4_1-tied", "f16-tied", "q6_k-embd-q8_0-out"])
def test_quantized_and_tied_sources(tmp_path, embd_type, out_type):
    src = write_small_gguf(tmp_path / "src.gguf", embd_type=embd_type, out_type=out_type,
                           n_vocab=256 if embd_type == Q.Q6_K else 96,
                           n_embd=256 if embd_type == Q.Q6_K else 64)
    rows = head_rows(n_embd=256 if embd_type == Q.Q6_K else 64)
    info = append_rows_gguf(src, tmp_path / "dst.gguf", rows, NAMES)
    check_extended(src, tmp_path / "dst.gguf", rows, NAMES, info)
    expected = (out_type or embd_type).name
    assert info["output_type"] == expected
    if expected.startswith("Q"):
        # quantizing costs precision but stays within the block format's step size
        assert 0 < info["max_row_error"] < 0.5 * float(np.abs(rows).max())


def test_output_bias_is_extended(tmp_path):
    src = write_small_gguf(tmp_path / "src.gguf", bias=True)
    info = append_rows_gguf(src, tmp_path / "dst.gguf", head_rows(), NAMES)
    check_extended(src, tmp_path / "dst.gguf", head_rows(), NAMES, info)


def test_empty_array_and_u64_metadata_survive(tmp_path):
    src = write_small_gguf(tmp_path / "src.gguf")
    append_rows_gguf(src, tmp_path / "dst.gguf", head_rows(), NAMES)
    r = gguf.GGUFReader(str(tmp_path / "dst.gguf"))
    empty = r.get_field("tiger.empty")
    assert empty.contents() == [] and int(empty.parts[3][0]) == VT.INT32
    assert r.get_field("tiger.u64").types == [VT.UINT64]
    assert r.get_field("tiger.u64").contents() == 2**40


@pytest.fixture()
def small_src(tmp_path):
    return write_small_gguf(tmp_path / "src.gguf")


@pytest.mark.parametrize("rows,names,match", [
    (np.zeros((3, 32), np.float32), NAMES, r"shape \(3, 32\), expected \(k, 64\)"),
    (np.zeros(64, np.float32), NAMES[:1], "2-D float array"),
    (np.zeros((3, 64), np.int32), NAMES, "2-D float array"),
    (np.zeros((0, 64), np.float32), [], "k >= 1"),
    (np.full((3, 64), np.nan, np.float32), NAMES, "NaN or infinite"),
    (np.zeros((3, 64), np.float32), NAMES[:2], "list of 3 token strings"),
    (np.zeros((1, 64), np.float32), "<|x|>", "list of 1 token strings"),
    (np.zeros((2, 64), np.float32), ["<|x|>", "<|x|>"], "distinct"),
    (np.zeros((2, 64), np.float32), ["<|x|>", ""], "non-empty string"),
    (np.zeros((2, 64), np.float32), ["<|x|>", "tok5"], r"\['tok5'\] are already in"),
])
def test_bad_inputs_are_clear_errors(small_src, tmp_path, rows, names, match):
    with pytest.raises(ValueError, match=match):
        append_rows_gguf(small_src, tmp_path / "dst.gguf", rows, names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.gguf"]


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "weights.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely not gguf")
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        append_rows_gguf(bad, tmp_path / "dst.gguf", head_rows(), NAMES)
    with pytest.raises(FileNotFoundError):
        append_rows_gguf(tmp_path / "missing.gguf", tmp_path / "dst.gguf", head_rows(), NAMES)


def test_soft_capped_logits_are_refused(tmp_path):
    capped = write_small_gguf(tmp_path / "capped.gguf", extra_kv={
        "llama.final_logit_softcapping": (30.0, VT.FLOAT32)})
    with pytest.raises(ValueError, match="soft-caps its logits.*cap=30"):
        append_rows_gguf(capped, tmp_path / "dst.gguf", head_rows(), NAMES)
    off = write_small_gguf(tmp_path / "off.gguf", extra_kv={
        "llama.final_logit_softcapping": (0.0, VT.FLOAT32)})
    append_rows_gguf(off, tmp_path / "dst.gguf", head_rows(), NAMES)  # 0 means no cap
    gemma2 = write_small_gguf(tmp_path / "gemma2.gguf", arch="gemma2")  # capped by default
    with pytest.raises(ValueError, match="'gemma2' soft-caps"):
        append_rows_gguf(gemma2, tmp_path / "dst2.gguf", head_rows(), NAMES)


def test_output_type_without_quantizer_is_refused(tmp_path):
    src = write_small_gguf(tmp_path / "src.gguf", out_type=Q.Q6_K, n_embd=256)
    with pytest.raises(ValueError, match="no Q6_K quantizer.*--output-tensor-type"):
        append_rows_gguf(src, tmp_path / "dst.gguf", head_rows(n_embd=256), NAMES)


def test_failed_write_leaves_no_temp_file_and_keeps_old_dst(small_src, tmp_path, monkeypatch):
    def dies(self, *a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", dies)
    with pytest.raises(OSError, match="disk full"):
        append_rows_gguf(small_src, tmp_path / "dst.gguf", head_rows(), NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.gguf"]

    (tmp_path / "old.gguf").write_bytes(b"previous version")
    with pytest.raises(OSError, match="disk full"):
        append_rows_gguf(small_src, tmp_path / "old.gguf", head_rows(), NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.gguf", "src.gguf"]
    assert (tmp_path / "old.gguf").read_bytes() == b"previous version"


# --- llama.cpp end to end -----------------------------------------------------------------------


def _last_logits(path, ids) -> np.ndarray:
    """llama.cpp's logits after ``ids``, all ``n_vocab`` of them (extra rows included).
    With ``logits_all=False`` llama-cpp-python does not fill ``Llama.scores``, so they are read
    from the context directly."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False,
                          logits_all=False)
    llm.eval(ids)
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def test_llama_cpp_logits(tiny_pair, tokenizer):
    """llama.cpp on the extended file: the original logits bit-identical to the source's, and
    the extra logits equal to dot(rows, final normed hidden state)."""
    pytest.importorskip("llama_cpp")
    import torch

    src, dst, rows, info, model = tiny_pair
    ids = tokenizer("The capital of France is").input_ids
    before, after = _last_logits(src, ids), _last_logits(dst, ids)
    v = info["n_vocab_before"]
    assert before.shape == (v,) and after.shape == (v + len(NAMES),)
    assert np.array_equal(after[:v], before)  # same bytes, same dot products: bit-identical

    # llama.cpp's own final hidden state, recovered exactly (the output matrix is F32 and has
    # far more rows than columns) from its original logits: the extra logits must be the
    # rows' dot products with that same state, up to F32 summation order.
    w = model.lm_head.weight.detach().double().numpy()
    hidden_cpp = np.linalg.lstsq(w, before.astype(np.float64), rcond=None)[0]
    assert np.abs(w @ hidden_cpp - before).max() < 1e-5
    assert np.allclose(after[v:], rows @ hidden_cpp, rtol=1e-5, atol=1e-4)

    # ... and close to transformers' final normed hidden state: llama.cpp keeps its KV cache
    # in F16, which moves the hidden state by ~2e-4 relative (extra logits off by ~2e-3).
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    hidden = out.hidden_states[-1][0, -1].double().numpy()  # llama: after the final norm
    assert np.allclose(after[v:], rows @ hidden, rtol=1e-3, atol=5e-3)
