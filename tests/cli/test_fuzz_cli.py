"""Fuzzing the command line: ``tigerdecode generate`` over random creativity, token budgets,
seeds, methods, temperatures, settings files, judge options and model paths, and
``tigerdecode quantize`` over bad model paths. Each run succeeds or ends with a one-line message
(a click error), never a traceback; a failed ``quantize`` leaves no output directory."""

import json

import pytest
from click.testing import CliRunner
from fuzz import fuzz
from hypothesis import given
from hypothesis import strategies as st

from tigerdecode.cli import main

number_text = st.one_of(
    st.floats(-2, 3).map(str), st.integers(-10, 10**6).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "", " ", "0.5,0.7", "½", "1_0",
                     str(2**64), "9" * 5000]),
    st.text(max_size=8))
METHODS = st.sampled_from(["tigerdecode", "greedy", "temperature", "top_p", "min_p", "beam"])
settings_text = st.one_of(
    st.fixed_dictionaries({}, optional={
        "creativity": st.floats(-1, 2) | st.text(max_size=4),
        "method": METHODS | st.integers(),
        "overrides": st.dictionaries(st.sampled_from(["seed", "judge", "max_rewrites",
                                                      "t_max", "warp", "ensemble", "raw"]),
                                     st.none() | st.booleans() | st.integers(-3, 10)
                                     | st.floats(-1, 2), max_size=3),
    }).map(json.dumps),
    st.text(max_size=30), st.just('{"creativity": 0.2, "creativity": 0.8}'))


@pytest.fixture(scope="module")
def model_paths(tiny_model_dir, tmp_path_factory):
    """Names a user might pass to --model: a real tiny model and several broken ones."""
    root = tmp_path_factory.mktemp("models")
    (root / "empty").mkdir()
    (root / "garbage.bin").write_bytes(b"\x00\xffnot a model")
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text('{"model_type": "llama", "hidden_size": "x"')
    (root / "fake.gguf").write_bytes(b"GGUF" + b"\x00" * 20)
    return [str(tiny_model_dir), str(root / "missing"), str(root / "empty"),
            str(root / "garbage.bin"), str(root / "bad-config"), str(root / "fake.gguf")]


def mostly(valid, hostile=number_text):
    """Valid four times in five, so whole valid runs happen too."""
    return st.integers(0, 4).flatmap(lambda i: hostile if i == 0 else valid)


@st.composite
def generate_args(draw, model_paths):
    good_model = st.just(model_paths[0])
    args = ["generate", draw(st.text(min_size=1, max_size=20)), "--no-heads",
            "--model", draw(mostly(good_model, st.sampled_from(model_paths[1:])))]
    if draw(st.booleans()):
        args += ["--creativity", draw(mostly(st.floats(0, 1).map(str)))]
    n = draw(mostly(st.integers(1, 3).map(str)))
    # a valid budget is cut to 3 tokens to keep the run short (the range check sees the rest)
    args += ["--max-new-tokens", n if not n.strip().isdigit() or len(n) > 6 or int(n) < 1
             else str(min(int(n), 3))]
    if draw(st.booleans()):
        args += ["--seed", draw(mostly(st.integers(0, 2**63 - 1).map(str)))]
    method = draw(METHODS) if draw(st.booleans()) else None
    if method:
        args += ["--method", method]
    if draw(st.integers(0, 3)) == 0:  # valid with the temperature methods only
        args += ["--temperature", draw(mostly(st.floats(0, 3).map(str)))]
    if draw(st.integers(0, 5)) == 0:
        args += ["--judge"]
    if draw(st.integers(0, 5)) == 0:
        args += ["--max-rewrites", draw(mostly(st.integers(0, 3).map(str)))]
    if draw(st.booleans()):
        args += ["--json"]
    return args, draw(settings_text) if draw(st.integers(0, 3)) == 0 else None


def _ok_or_one_line(result):
    """Success, or a click error (exit code 1 or 2) with a message and no traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: "
                             f"{result.exception}\n{result.output}") from result.exception
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.exit_code in (1, 2) and "Error" in result.output, result.output


@fuzz(25)
@given(data=st.data())
def test_generate_options_never_traceback(model_paths, tmp_path, data):
    args, settings = data.draw(generate_args(model_paths))
    if settings is not None:
        (tmp_path / "s.json").write_text(settings)
        args += ["--config", str(tmp_path / "s.json")]
    _ok_or_one_line(CliRunner().invoke(main, args))


@fuzz(10)
@given(model=st.sampled_from(range(1, 6)), bits=st.sampled_from(["4", "8", "3"]))
def test_quantize_with_a_bad_model_writes_nothing(model_paths, tmp_path, model, bits):
    out = tmp_path / "q-out"
    result = CliRunner().invoke(main, ["quantize", model_paths[model], "--bits", bits,
                                       "--out", str(out)])
    _ok_or_one_line(result)
    assert result.exit_code != 0 and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".q-out")], "temp dir left"


def test_bad_numbers_name_the_option(model_paths):
    for opt, value in [("--creativity", "nan"), ("--creativity", "1.5"),
                       ("--max-new-tokens", "0"), ("--max-new-tokens", "99999"),
                       ("--seed", "-1")]:
        r = CliRunner().invoke(main, ["generate", "hi", "--model", model_paths[0], opt, value])
        assert r.exit_code == 2 and opt in r.output, (opt, value, r.output)
