import json

from click.testing import CliRunner

from tigerdecode import __version__
from tigerdecode.cli import main


def test_version():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_generate_json_on_a_local_model(tiny_model_dir):
    res = CliRunner().invoke(main, ["generate", "Hello there", "--model", str(tiny_model_dir),
                                    "--max-new-tokens", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["prompt"] == "Hello there" and isinstance(out["text"], str)
    assert len(out["token_ids"]) <= 5 and 1 <= len(out["trace"]) <= 5
    assert out["creativity"] == 0.5 and out["method"] == "tigerdecode" and out["notes"]


def test_generate_seeded_sampling_is_reproducible(tiny_model_dir):
    args = ["generate", "Hello", "--model", str(tiny_model_dir), "--max-new-tokens", "8",
            "--creativity", "1.0", "--seed", "3", "--json", "--raw"]
    a, b = (json.loads(CliRunner().invoke(main, args).stdout) for _ in range(2))
    assert a["token_ids"] == b["token_ids"]
    base = ["--method", "temperature", "--temperature", "1.0"]
    a, b = (json.loads(CliRunner().invoke(main, args + base).stdout) for _ in range(2))
    assert a["token_ids"] == b["token_ids"] and a["method"] == "temperature"


def test_generate_trace_view_and_flags(tiny_model_dir):
    args = ["generate", "Hello", "--model", str(tiny_model_dir), "--max-new-tokens", "4",
            "--trace", "--ensemble", "--seed", "0"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "risk view: no control heads" in res.output and "stop:" in res.output
    res = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tiny_model_dir),
                                    "--creativity", "1.5"])
    assert res.exit_code != 0 and "creativity must lie in [0, 1]" in res.output
    res = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tiny_model_dir),
                                    "--temperature", "0.5"])
    assert res.exit_code != 0 and "--creativity" in res.output


def test_examples_side_by_side(tiny_model_dir):
    res = CliRunner().invoke(main, ["examples", "--model", str(tiny_model_dir),
                                    "--max-new-tokens", "3", "--width", "90"])
    assert res.exit_code == 0, res.output
    assert res.output.count("creativity 0.5") == 3 and " │ " in res.output


def test_generate_bad_inputs(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(main, ["generate", "", "--model", str(tiny_model_dir)])
    assert r.exit_code != 0 and "prompt is empty" in r.output
    r = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tiny_model_dir),
                                  "--max-new-tokens", "0"])
    assert r.exit_code != 0 and "max_new_tokens must lie in" in r.output
    r = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tmp_path)])
    assert r.exit_code != 0 and "no config.json" in r.output


def test_info_lists_versions_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    res = CliRunner().invoke(main, ["info"])
    assert res.exit_code == 0
    assert "torch" in res.output and str(tmp_path) in res.output
