"""The stored-feature format, resume after interruption, and clear errors for bad data dirs."""

import json

import numpy as np
import pytest

import tigerdecode.training.build as build_mod
from tigerdecode.qa.data import QAItem
from tigerdecode.training.build import build_data
from tigerdecode.training.sampling import Setting
from tigerdecode.training.store import DataStoreError, FeatureStore

SETTINGS = (Setting("greedy"), Setting("t1", 1.0, 0.95))


def items(n=6):
    return [QAItem(prompt=f"The colour of thing {i} is", answers=["red", "crimson"],
                   id=f"x{i}", topic=f"t{i % 3}") for i in range(n)]


def build(model, tok, out, **kw):
    return build_data(model, tok, items(), out, layers=[2, 4], settings=SETTINGS,
                      max_new_tokens=5, batch_size=3, progress=False, **kw)


def test_format(tiny_llama, tmp_path):
    model, tok = tiny_llama
    store = build(model, tok, tmp_path / "d")
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["format"] == 1 and m["config"]["layers"] == [2, 4] and len(m["units"]) == 4
    assert {u["unit"] for u in m["units"]} == {"b00000-greedy", "b00000-t1", "b00001-greedy",
                                               "b00001-t1"}
    t, answers = store.load()
    n = len(t["answer"])
    assert n == sum(u["n_tokens"] for u in m["units"]) and len(answers) == 12
    assert t["layer_2"].dtype == np.float16 and t["layer_2"].shape == (n, 64)
    assert t["dev"].dtype == np.int8 and set(np.unique(t["dev"])) <= {-1, 0, 1}
    assert set(np.unique(t["stop"])) <= {0, 1}
    for k in ("maxprob", "entropy", "logprob", "next_eos_prob"):
        assert t[k].dtype == np.float32 and t[k].shape == (n,)
    assert (t["maxprob"] <= 1).all() and (t["logprob"] <= 0).all()
    # answer rows index the answers list; positions count up from 0 within an answer
    for a in np.unique(t["answer"]):
        pos = t["pos"][t["answer"] == a]
        assert list(pos) == list(range(len(pos))) == list(range(answers[a]["n_kept"]))
    assert {a["setting"] for a in answers} == {"greedy", "t1"}
    assert all({"id", "topic", "text", "correct", "prompt"} <= set(a) for a in answers)
    assert store.load([4])[0].keys() >= {"layer_4"} and "layer_2" not in store.load([4])[0]
    with pytest.raises(DataStoreError, match="stores layers"):
        store.load([3])


def test_resume_after_interruption(tiny_llama, tmp_path, monkeypatch):
    model, tok = tiny_llama
    real = build_mod.sample_answers
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(build_mod, "sample_answers", flaky)
    with pytest.raises(KeyboardInterrupt):
        build(model, tok, tmp_path / "d")
    assert len(FeatureStore(tmp_path / "d").manifest()["units"]) == 2
    assert not list((tmp_path / "d").glob(".*tmp*"))
    calls["n"] = 10
    build(model, tok, tmp_path / "d")
    assert calls["n"] == 12  # only the two missing units ran
    monkeypatch.setattr(build_mod, "sample_answers", real)
    build(model, tok, tmp_path / "ref")
    (t1, a1), (t2, a2) = FeatureStore(tmp_path / "d").load(), FeatureStore(tmp_path / "ref").load()
    assert [a["text"] for a in a1] == [a["text"] for a in a2]
    for k in t1:
        np.testing.assert_array_equal(t1[k], t2[k])


def test_time_budget_stops_cleanly(tiny_llama, tmp_path):
    model, tok = tiny_llama
    build(model, tok, tmp_path / "d", max_seconds=1e-9)
    assert len(FeatureStore(tmp_path / "d").manifest()["units"]) == 1


def test_errors(tiny_llama, tmp_path):
    model, tok = tiny_llama
    with pytest.raises(DataStoreError, match="no manifest.json"):
        FeatureStore(tmp_path / "nothing").load()
    build(model, tok, tmp_path / "d", max_seconds=1e-9)
    with pytest.raises(DataStoreError, match="different configuration.*layers"):
        build_data(model, tok, items(), tmp_path / "d", layers=[1], settings=SETTINGS,
                   max_new_tokens=5, batch_size=3, progress=False)
    (tmp_path / "d" / "shard-00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataStoreError, match="unreadable"):
        FeatureStore(tmp_path / "d").load()
    (tmp_path / "d" / "manifest.json").write_text("{not json")
    with pytest.raises(DataStoreError, match="corrupt"):
        FeatureStore(tmp_path / "d").load()


def test_add_layers_equals_a_build_that_stored_them(tiny_llama, tmp_path, monkeypatch):
    """`data add-layers` re-reads the stored answers teacher-forced: the final normed state
    (layer 5 of the 4-layer model) it adds equals what a build storing it records, an
    interrupted run resumes, and a model the data was not built with is refused."""
    import torch

    import tigerdecode.training.restate as restate
    from tigerdecode.training.restate import add_layers

    model, tok = tiny_llama
    ref = build_data(model, tok, items(), tmp_path / "ref", layers=[2, 4, 5], settings=SETTINGS,
                     max_new_tokens=5, batch_size=3, progress=False)
    store = build(model, tok, tmp_path / "d")
    real, calls = restate._states, {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(restate, "_states", flaky)
    with pytest.raises(KeyboardInterrupt):
        add_layers(model, tok, tmp_path / "d", [5], batch_size=3, progress=False)
    assert store.extra_layers() == [] and not list((tmp_path / "d").glob(".*tmp*"))
    assert len(list((tmp_path / "d").glob("*.layer5.safetensors"))) == 1
    assert add_layers(model, tok, tmp_path / "d", [5], batch_size=2, progress=False) == [5]
    assert calls["n"] == 2 + 3 * 2  # the three shards left, two batches each
    (t, a), (tr, ar) = store.load([2, 5]), ref.load([2, 5])
    assert [x["text"] for x in a] == [x["text"] for x in ar]
    np.testing.assert_allclose(t["layer_5"].astype(np.float32), tr["layer_5"].astype(np.float32),
                               atol=2e-2)
    np.testing.assert_array_equal(t["layer_2"], tr["layer_2"])
    p, pr = store.load_prompt_states([2, 5]), ref.load_prompt_states([2, 5])
    np.testing.assert_allclose(p[5].astype(np.float32), pr[5].astype(np.float32), atol=2e-2)
    np.testing.assert_array_equal(p[2], pr[2])
    with pytest.raises(DataStoreError, match=r"stores layers \[2, 4, 5\]"):
        store.load([3])

    from tiny_models import build_tiny_model

    other = build_tiny_model("llama", tok, seed=1)  # same fingerprint, other weights
    with pytest.raises(DataStoreError, match="differ from the stored ones"):
        add_layers(other, tok, tmp_path / "d", [3], progress=False)
    assert not list((tmp_path / "d").glob("*.layer3.safetensors"))
    with torch.no_grad():
        assert add_layers(model, tok, tmp_path / "d", [5], progress=False) == [5]  # nothing left


def test_stored_files_are_readable_as_the_umask_allows(tiny_llama, tmp_path):
    import os
    import stat

    model, tok = tiny_llama
    build(model, tok, tmp_path / "d", max_seconds=1e-9)
    umask = os.umask(0)
    os.umask(umask)
    for f in (tmp_path / "d").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name


def test_answers_with_unicode_line_separators_load(tiny_llama, tmp_path):
    """A model may write U+2028 / U+0085 / U+001E: the shards store texts unescaped, and a line
    of the shard ends at "\\n" only (a fit once failed on a text holding U+2028)."""
    model, tok = tiny_llama
    build(model, tok, tmp_path / "d")
    store = FeatureStore(tmp_path / "d")
    shard = store.root / "shard-00000.jsonl"
    rows = [json.loads(s) for s in shard.read_text(encoding="utf-8").split("\n") if s]
    odd = "a\u2028b\u0085c\u001ed\u2029e"
    rows[0]["text"] = odd
    shard.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                     encoding="utf-8")
    assert "\u2028" in shard.read_text(encoding="utf-8")  # stored raw, as the build writes it
    _, answers = store.load()
    assert answers[0]["text"] == odd and len(answers) == sum(
        u["n_answers"] for u in store.manifest()["units"])
