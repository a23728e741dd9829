"""Settings files: round trip, validation with clear errors, atomic save, merge precedence."""

import json

import pytest

from tigerdecode.settings import (
    ConfigError,
    DecodeSettings,
    load_settings,
    merge,
    resolve,
    save_settings,
)


def test_round_trip(tmp_path):
    s = DecodeSettings(creativity=0.3, overrides={"judge": True, "max_rewrites": 2},
                       source={"method": "tigerdecode+judge"})
    p = save_settings(s, tmp_path / "sub" / "s.json")
    assert load_settings(p) == s
    assert json.loads(p.read_text())["format"] == "tigerdecode.settings/1"
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]  # no temp file left
    assert s.generate_kwargs() == {"creativity": 0.3, "method": "tigerdecode", "judge": True,
                                   "max_rewrites": 2}


@pytest.mark.parametrize("bad, words", [
    ({"creativity": 1.5}, "[0, 1]"),
    ({"creativity": float("nan")}, "[0, 1]"),
    ({"creativity": "high"}, "number"),
    ({"creativity": True}, "number"),
    ({"method": "rm -rf /"}, "method"),
    ({"overrides": {"Bad Name": 1}}, "not a valid name"),
    ({"overrides": {"creativity": 1}}, "top-level"),
    ({"overrides": {"x": [1, 2]}}, "must be a number"),
    ({"overrides": {f"k{i}": i for i in range(40)}}, "at most"),
    ({"overrides": {"x": "y" * 600}}, "characters"),
    ({"temperature": 0.7}, "unknown settings field"),
    ({"format": "other/9"}, "unsupported settings format"),
])
def test_bad_settings_name_the_problem(bad, words):
    with pytest.raises(ConfigError) as e:
        resolve(bad)
    assert words in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(tmp_path / "x.json")
    (tmp_path / "big.json").write_text(" " * 70_000)
    with pytest.raises(ConfigError, match="bytes"):
        load_settings(tmp_path / "big.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_settings(tmp_path / "list.json")


def test_merge_explicit_wins_and_none_is_unset():
    cfg = {"creativity": 0.2, "overrides": {"seed": 3}}
    assert merge(cfg, {"creativity": 0.9, "seed": None}) == {
        "creativity": 0.9, "method": "tigerdecode", "seed": 3}
    assert merge(None, {"creativity": 0.4}) == {"creativity": 0.4}


def test_for_command_fills_only_what_the_command_line_left_out(tmp_path):
    from tigerdecode.settings import for_command

    p = save_settings(DecodeSettings(0.3, overrides={"seed": 7, "ensemble": True,
                                                     "resample_at": 0.6}), tmp_path / "s.json")
    params = {"creativity": 0.5, "method": "tigerdecode", "seed": None, "ensemble": False,
              "max_new_tokens": 64}
    out = for_command(p, params, given={"max_new_tokens"})
    assert out == {"creativity": 0.3, "method": "tigerdecode", "seed": 7, "ensemble": True,
                   "max_new_tokens": 64, "overrides": {"resample_at": 0.6}}
    assert for_command(p, params, given={"creativity", "seed"})["creativity"] == 0.5
    save_settings(DecodeSettings(0.3, overrides={"judge": True, "max_rewrites": 1}), p)
    params["max_rewrites"] = None  # a command option of the same name stays with the judge
    assert for_command(p, params, given=set())["overrides"] == {"judge": True, "max_rewrites": 1}
    save_settings(DecodeSettings(0.3, overrides={"warp_drive": 1}), p)
    with pytest.raises(ConfigError, match="warp_drive"):
        for_command(p, params, given=set())


def test_for_generate_maps_ensemble_flag():
    from tigerdecode.settings import for_generate

    cfg = {"creativity": 0.2, "overrides": {"ensemble": True}}
    assert for_generate(cfg, {"seed": None})["ensemble"] == "self"
    assert "ensemble" not in for_generate({"overrides": {"ensemble": False}}, {})
