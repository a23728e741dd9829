"""`tigerdecode bench kernels|quant|generate`: plain click commands, --json on stdout, --out a
file written whole."""

import json

from click.testing import CliRunner

from tigerdecode.cli import main


def test_bench_kernels_prints_a_table():
    res = CliRunner().invoke(main, ["bench", "kernels", "--quick", "--reps", "1"])
    assert res.exit_code == 0, res.output
    assert "% of peak" in res.output and res.output.count("\n| ") >= 4


def test_bench_quant_out_writes_every_number(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TIGERDECODE_QUANT_BACKEND", "cpu")
    out = tmp_path / "q.json"
    res = CliRunner().invoke(main, ["bench", "quant", "--model", str(tiny_model_dir),
                                    "--new-tokens", "2", "--repeats", "1", "--group-size", "32",
                                    "--ppl-tokens", "64", "--method", "rtn", "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert set(saved["variants"]) == {"fp32", "bf16", "int8", "int4"}
    assert "| int4 |" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["q.json"]


def test_bench_generate_json(tiny_model_dir, monkeypatch):
    from tigerdecode.decode import fast

    monkeypatch.setattr(fast, "COMPILE", False)  # compiling takes long; tests/decode covers it
    res = CliRunner().invoke(main, ["bench", "generate", "--model", str(tiny_model_dir),
                                    "--max-new-tokens", "2", "--repeats", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["rows"]) == 7 and out["controlled_vs_plain"] > 0
    assert out["fast_vs_plain"] > 0 and out["fast_same_tokens"] is True
    assert out["llama_cpp_tokens_per_s"] is None and out["fast_vs_llama_cpp"] is None
    bad = CliRunner().invoke(main, ["bench", "generate", "--creativity", "2"])
    assert bad.exit_code == 2 and "creativity must lie in [0, 1]" in bad.output
