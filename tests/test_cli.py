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
    assert 1 <= out["n_tokens"] <= 5 and len(out["token_ids"]) == out["n_tokens"]


def test_generate_seeded_sampling_is_reproducible(tiny_model_dir):
    args = ["generate", "Hello", "--model", str(tiny_model_dir), "--max-new-tokens", "8",
            "--temperature", "1.0", "--seed", "3", "--json", "--raw"]
    a, b = (json.loads(CliRunner().invoke(main, args).stdout) for _ in range(2))
    assert a["token_ids"] == b["token_ids"]


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
