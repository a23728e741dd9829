"""Fuzzing settings files and the API's arguments (creativity, max_new_tokens, seed, method,
policy overrides, judge options): each input is accepted or refused with a ``ValueError`` /
``TypeError`` that names the bad value (``ConfigError`` for files), never another exception;
a refused save leaves no file behind."""

import json
import math

import pytest
import torch
from fuzz import fuzz
from hypothesis import given
from hypothesis import strategies as st

from tigerdecode.settings import (
    ConfigError,
    DecodeSettings,
    GenerateRequest,
    load_settings,
    save_settings,
)

scalar = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
          | st.sampled_from([10**400, -(2**63) - 1, 2**63, math.nan, math.inf, 1e308, "" ,
                             "x" * 600]))
json_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                          max_leaves=8)
NAMES = st.sampled_from(["seed", "max_new_tokens", "judge", "max_rewrites", "judge_threshold",
                         "on_reject", "t_max", "top_p_min", "resample_at", "ensemble",
                         "creativity", "Bad Name", "", "x" * 70]) | st.text(max_size=10)
settings_obj = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(["tigerdecode.settings/1", "tigerdecode.settings/2"]) | scalar,
    "method": st.sampled_from(["tigerdecode", "greedy", "top_p", "rm -rf /"]) | scalar,
    "creativity": st.floats(-0.5, 1.5) | scalar,
    "overrides": st.dictionaries(NAMES, scalar, max_size=5) | json_value,
    "source": json_value,
}) | st.dictionaries(st.text(max_size=8), json_value, max_size=4) | json_value


@st.composite
def settings_bytes(draw):
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    text = json.dumps(draw(settings_obj))
    kind = draw(st.sampled_from(["plain", "bom", "dup", "deep", "crlf", "truncated"]))
    if kind == "bom":
        text = "\ufeff" + text
    elif kind == "dup":
        text = '{"creativity": 0.1, "creativity": 0.9}'
    elif kind == "deep":
        n = draw(st.integers(1, 30_000))
        text = '{"source": ' + "[" * n + "]" * n + "}"
    elif kind == "crlf":
        text = text.replace(",", ",\r\n")
    elif kind == "truncated":
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode("utf-8")


@fuzz(50)
@given(data=settings_bytes())
def test_settings_files_load_or_fail_with_a_config_error(tmp_path, data):
    path = tmp_path / "s.json"
    path.write_bytes(data)
    try:
        s = load_settings(path)
    except ConfigError as e:
        assert str(path) in str(e)
        return
    assert isinstance(s, DecodeSettings) and 0 <= s.creativity <= 1
    back = save_settings(s, tmp_path / "out.json")  # what loads saves and reads back the same
    assert load_settings(back) == s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "s.json"]


def test_settings_refusals_name_the_problem(tmp_path):
    path = tmp_path / "s.json"
    for text, words in [('{"creativity": 0.1, "creativity": 0.9}', "more than once"),
                        ('{"source": ' + "[" * 30_000 + "]" * 30_000 + "}", "nested too deeply"),
                        ('{"overrides": {"seed": ' + "9" * 400 + "}}", "digits"),
                        ('{"creativity": ' + "9" * 5000 + "}", "not valid JSON")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=words):
            load_settings(path)
    path.write_bytes(b'\xef\xbb\xbf{"creativity": 0.25}')  # a BOM is skipped
    assert load_settings(path).creativity == 0.25


def test_a_refused_save_leaves_no_file(tmp_path):
    s = DecodeSettings(0.3)
    s.overrides = {"x": object()}  # past validation: json.dump fails halfway
    with pytest.raises(TypeError):
        save_settings(s, tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == []


# ---- API arguments ------------------------------------------------------------------------------

anything = scalar | st.builds(torch.tensor, st.floats(0, 1)) | st.just(object())
api_kwargs = st.fixed_dictionaries({}, optional={
    "creativity": st.floats(0, 1) | anything,
    "max_new_tokens": st.integers(-5, 5000) | anything,
    "seed": st.integers(-5, 2**64) | anything,
    "method": st.sampled_from(["tigerdecode", "greedy", "temperature", "top_p", "dola", "beam"])
    | anything,
    "min_new_tokens": st.integers(-2, 10) | anything,
    "judge": st.sampled_from([False, True, "auto", "/nonexistent/judge"]) | anything,
    "max_rewrites": st.integers(-3, 50) | anything,
    "judge_threshold": st.floats(-1, 2) | anything,
    "on_reject": st.sampled_from(["abstain", "keep", "explode"]) | anything,
    "t_max": st.floats(-1, 5) | anything,
    "top_p_min": st.floats(-1, 2) | anything,
    "resample_at": st.floats(-1, 2) | anything,
    "eos_gain": st.floats(-10, 10) | anything,
    "temperature": st.floats(-1, 5) | anything,
    "top_p": st.floats(-1, 2) | anything,
    "raw": st.booleans() | anything,
    "warp_drive": anything,
})


@fuzz(50)
@given(kwargs=api_kwargs)
def test_api_arguments_are_accepted_or_refused_by_name(kwargs):
    """``GenerateRequest.build`` is what ``generate``, ``wrap``, ``generate_text``, the CLI and
    the demo all build: every argument is checked there, with a message naming it."""
    try:
        req = GenerateRequest.build(**kwargs)
    except (ValueError, TypeError) as e:
        assert str(e).strip()
        return
    assert 0 <= req.creativity <= 1 and 1 <= req.max_new_tokens <= 4096


@fuzz(25)
@given(kwargs=api_kwargs)
def test_generate_never_tracebacks_on_bad_arguments(tiny_llama, kwargs):
    """The same through ``tigerdecode.generate`` on a tiny model (valid requests are cut to two
    new tokens and no judge, to keep the run short)."""
    import tigerdecode

    model, tok = tiny_llama
    kwargs.pop("judge", None)
    if isinstance(kwargs.get("max_new_tokens"), int) and kwargs["max_new_tokens"] > 2:
        kwargs["max_new_tokens"] = 2
    if kwargs.get("max_new_tokens") is None:  # None means "not given": the default of 20
        kwargs["max_new_tokens"] = 2
    ids = tok(["Hello there"], return_tensors="pt")["input_ids"]
    try:
        out = tigerdecode.generate(model, ids, tokenizer=tok, heads=None, **kwargs)
    except (ValueError, TypeError) as e:
        assert str(e).strip()
        return
    assert out.shape[0] == 1 and out.shape[1] <= ids.shape[1] + 2


@pytest.mark.parametrize("kwargs", [{"creativity": 10**400}, {"eos_gain": 10**400},
                                    {"t_max": -(10**30)}])
def test_integers_too_large_for_a_float_are_refused_by_name(kwargs):
    (key,) = kwargs
    with pytest.raises(ValueError, match=f"'{key}' is an integer of"):
        GenerateRequest.build(**kwargs)
    with pytest.raises(ConfigError, match="digits"):
        DecodeSettings(**kwargs) if key == "creativity" else DecodeSettings(overrides=kwargs)
