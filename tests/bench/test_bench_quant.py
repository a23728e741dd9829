"""bench quant on a tiny model: every variant measured, ratios consistent with the raw numbers."""

import json

from click.testing import CliRunner

from tigerdecode.bench.quant import format_report, run
from tigerdecode.cli import main


def test_quant_bench_runs_on_a_tiny_model(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_QUANT_BACKEND", "cpu")  # the interpreter would be slow here
    r = run(str(tiny_model_dir), new_tokens=3, repeats=1, group_size=32, ppl_tokens=96,
            progress=False)
    v, s = r["variants"], r["summary"]
    assert set(v) == {"fp32", "bf16", "int8", "int4"}
    for x in v.values():
        assert x["tokens_per_s"] > 0 and x["perplexity"] > 1.0 and x["bytes"] > 0
    assert v["int4"]["bytes"] < v["int8"]["bytes"] < v["fp32"]["bytes"]  # untied: fp32 embedding
    assert abs(s["int4_vs_float"] - v["int4"]["tokens_per_s"] / v["fp32"]["tokens_per_s"]) < 1e-9
    assert abs(s["ppl_increase_int8"] - (v["int8"]["perplexity"] / v["fp32"]["perplexity"] - 1)) < 1e-9
    assert "| int4 |" in format_report(r)


def test_quant_bench_cli_json(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_QUANT_BACKEND", "cpu")
    res = CliRunner().invoke(main, ["bench", "quant", "--model", str(tiny_model_dir),
                                    "--new-tokens", "2", "--repeats", "1", "--group-size", "32",
                                    "--ppl-tokens", "64", "--method", "rtn", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("int4_vs_float", "int8_vs_float", "int4_bytes_vs_bf16", "ppl_increase_int4",
                "ppl_increase_int8"):
        assert isinstance(out[key], float)
