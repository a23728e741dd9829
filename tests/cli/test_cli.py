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
    assert r.exit_code == 2 and "--max-new-tokens" in r.output and "1<=x<=4096" in r.output
    r = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tmp_path)])
    assert r.exit_code != 0 and "no config.json" in r.output


def test_info_lists_versions_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    res = CliRunner().invoke(main, ["info"])
    assert res.exit_code == 0
    assert "torch" in res.output and str(tmp_path) in res.output


def _all_commands(group, prefix=()):
    """(path, command) for every command under ``group``, groups included."""
    import click

    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, (*prefix, name))


def test_help_lists_every_command_with_a_one_line_summary():
    import click

    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    expected = {"bench", "data", "demo", "eval", "examples", "export", "fit", "generate", "heads",
                "info", "judge", "policy", "quantize"}
    assert expected <= set(main.commands)
    for path, cmd in _all_commands(main):
        parent = runner.invoke(main, [*path[:-1], "--help"])
        listed = [ln for ln in parent.output.splitlines() if ln.strip().startswith(path[-1] + " ")]
        assert listed, f"`tigerdecode {' '.join(path[:-1])} --help` does not list {path[-1]}"
        summary = listed[0].split(None, 1)[1]
        assert not summary.endswith("..."), f"{' '.join(path)}: summary cut short: {summary!r}"
        own = runner.invoke(main, [*path, "--help"])
        assert own.exit_code == 0 and "Traceback" not in own.output, path
        if isinstance(cmd, click.Group):
            assert cmd.commands, path


def test_json_flags_print_parseable_json(tiny_model_dir):
    show = CliRunner().invoke(main, ["policy", "show", "--json"])
    assert show.exit_code == 0, show.output
    rows = json.loads(show.stdout)
    assert [r["creativity"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rows[0]["temperature"] == 0.0 and rows[-1]["abstains"] is False
    gen = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tiny_model_dir),
                                    "--max-new-tokens", "2", "--json"])
    assert gen.exit_code == 0, gen.output
    assert json.loads(gen.stdout)["prompt"] == "Hi"


def test_policy_show_table_and_overrides():
    res = CliRunner().invoke(main, ["policy", "show"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("| creativity | temperature |") and len(lines) == 2 + 5
    flat = CliRunner().invoke(main, ["policy", "show", "--json", "--set", "abstain_at=0.9",
                                     "--set", "abstain_rise=0"])
    assert {r["abstain_at"] for r in json.loads(flat.stdout) if r["abstains"]} == {0.9}
    bad = CliRunner().invoke(main, ["policy", "show", "--set", "nope=1"])
    assert bad.exit_code == 2 and "Policy field" in bad.output


def test_skip_bad_reads_past_bad_lines(tmp_path):
    from click.testing import CliRunner

    from tigerdecode.cli import main

    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"prompt": "p1", "answers": ["a"], "topic": "t"}\nnot json\n'
                  '{"prompt": "p2", "answers": ["b"], "topic": "t"}\n')
    args = ["data", "build", "--qa", str(qa), "--out", str(tmp_path / "d"), "--model",
            str(tmp_path / "no-such-model")]
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code != 0 and "qa.jsonl:2" in bad.output and "no-such-model" not in bad.output
    skipped = CliRunner().invoke(main, ["--skip-bad", *args])
    # the file is read past its bad line; the run then stops at the missing model
    assert "skipped 1" in skipped.output.lower() and "no-such-model" in skipped.output
