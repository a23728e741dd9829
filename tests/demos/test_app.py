"""Drive the running app through its API with gradio_client, as a user's browser would."""

import json
import math
import re

import pytest
from gradio_client.exceptions import AppError

from tigerdecode.demos.backend import policy_defaults
from tigerdecode.settings import load_settings


def generate(client, prompt, creativity, max_new_tokens=8, judge=False, seed=0, consensus=1):
    policy = list(policy_defaults().values())
    return client.predict(prompt, creativity, max_new_tokens, seed, False, False, "", "", judge,
                          2, consensus, *policy, api_name="/generate")


@pytest.mark.parametrize("creativity", [0.0, 1.0])
def test_generate_highlights_every_token(client, demo_backend, creativity):
    status, pdev, pstop, plot, summary, judge, timings, result = generate(
        client, "What is the capital of Japan?", creativity)
    assert status.startswith("**Done")
    trace = result["trace"]
    assert len(pdev) == len(pstop) == len(trace) == 8  # the tiny model never stops early
    for shown, t in zip(pdev, trace, strict=True):
        assert shown["token"].replace("⏎\n", "\n") == t["token"]
        assert 0.0 <= shown["class_or_confidence"] <= 1.0
        assert math.isclose(shown["class_or_confidence"], t["p_dev"], abs_tol=1e-6)
    assert [s["class_or_confidence"] for s in pstop] == pytest.approx(
        [t["p_stop"] for t in trace], abs=1e-6)
    # the plot holds both signals for every token
    for signal in ("p_dev", "p_stop"):  # one line per signal, a point per token
        points = re.search(rf'data-series="{signal}"[^>]*points="([^"]*)"', plot).group(1)
        assert len(points.split()) == len(trace)
    temps = {t["temperature"] for t in trace}
    assert temps == {0.0} if creativity == 0 else min(temps) > 0  # 0 is greedy, 1 samples
    assert f"creativity {creativity:.2f}" in summary and "tokens per s" in timings
    assert judge == ""  # no verdict is shown when no judge ran


def test_judge_verdict_and_rewrites(client, demo_backend):
    assert demo_backend.capabilities()["judge"]
    *_, panel, _, result = generate(client, "What is the capital of Japan?", 0.0, judge=True)
    verdict = result["judge"]
    assert verdict["verdict"] in ("accept", "rewritten", "abstain", "best_of_rejected")
    assert "Judge:</b>" in panel and verdict["verdict"] in panel
    assert f"risk score {verdict['score']:.3f}" in panel
    if verdict["rewrites"] and any("text" in r for r in verdict["rewrites"]):
        assert "first draft" in panel


def test_judge_control_is_honest_without_a_judge(tiny_llama):
    """No judge for this model: the checkbox is disabled with the reason, and asking anyway
    (through the API) gives that reason, never a made-up verdict."""
    from tigerdecode.demos.app import build_app
    from tigerdecode.demos.backend import DemoBackend, Unavailable

    model, tok = tiny_llama
    backend = DemoBackend(model, tok, heads=None)  # judge="auto": none ships for this model
    assert not backend.capabilities()["judge"]
    assert backend.judge_note == "no trained judge ships for this model"
    app = build_app(backend)
    (box,) = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "judge-on"]
    assert box.interactive is False and "no trained judge ships for this model" in box.label
    with pytest.raises(Unavailable, match="no trained judge ships"):
        backend.generate("Hi", creativity=0.5, judge=True)


def test_streaming_sends_tokens_before_the_end(client):
    job = client.submit("Tell me a story.", 0.5, 6, 0, False, False, "", "", False, 2, 1,
                        *policy_defaults().values(), api_name="/generate")
    job.result()
    outs = job.outputs()
    partial = [o for o in outs if o[0].startswith("Generating")]
    assert partial, "no partial output was streamed"
    assert [len(o[1]) for o in partial] == sorted(len(o[1]) for o in partial)
    assert outs[-1][0].startswith("**Done") and len(outs[-1][1]) == 6


@pytest.mark.parametrize("prompt, words", [
    ("", "prompt is empty"),
    ("x" * 501, "at most 500"),
])
def test_bad_prompt_gives_visible_message(client, prompt, words):
    status, pdev, *_ = generate(client, prompt, 0.5)
    assert words in status and "Traceback" not in status and pdev == []


def test_bounds_on_max_new_tokens(client):
    with pytest.raises(AppError, match="maximum value 32"):  # the slider's own bound
        generate(client, "Hello", 0.5, max_new_tokens=33)
    note, ours, plain = client.predict("Hello", 0.5, 33, 0, False, 1, api_name="/compare")
    assert "from 1 to 32" in note and ours == plain == []


def test_generation_error_is_shown_and_app_keeps_serving(client, demo_backend, monkeypatch):
    gen = demo_backend._generator(None)

    def boom(*a, **k):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(gen, "generate_text", boom)
    status = generate(client, "Hello", 0.5)[0]
    assert status.startswith("**Generation failed**") and "simulated" in status
    assert "Traceback" not in status and "File " not in status
    monkeypatch.undo()
    assert generate(client, "Hello", 0.5)[0].startswith("**Done")


def test_compare_runs_plain_sampling_at_the_matching_temperature(client):
    note, ours, plain = client.predict("Hello", 0.6, 6, 0, False, 1, api_name="/compare")
    m = re.search(r"temperature (\d\.\d\d)", note)
    assert m and 0 < float(m.group(1)) <= 1
    assert len(ours) == len(plain) == 6 and "samples" not in note


def test_compare_with_samples_draws_them_on_both_sides(demo_backend, monkeypatch):
    """Samples > 1 reach both decodes (the same budget on each side) and the note says so."""
    from tigerdecode.demos.handlers import Handlers

    seen = []
    real = demo_backend.generate

    def spy(prompt, **kw):
        seen.append((kw.get("method", "tigerdecode"), kw["consensus"]))
        return real(prompt, **kw)

    monkeypatch.setattr(demo_backend, "generate", spy)
    note, ours, plain = Handlers(demo_backend, None).compare("Write a poem about Paris.", 0.6, 6,
                                                             0, False, 3)
    assert [c for _, c in seen] == [3, 3] and seen[0][0] == "tigerdecode"
    assert "Each side drew 3 samples" in note and len(ours) == len(plain) == 6
    note, ours, plain = Handlers(demo_backend, None).compare("Hi", 0.6, 6, 0, False, 10)
    assert "Samples must be a whole number from 1 to 9" in note and ours == plain == []


def test_tradeoff_empty_state(demo_backend, tmp_path):
    """The launch file is missing: the tab says how to make one (or upload one)."""
    from tigerdecode.demos.handlers import Handlers

    status, plot, table, points, loaded = Handlers(demo_backend,
                                                   tmp_path / "none.json").load_results()
    assert "No evaluation results at `none.json`" in status and "tigerdecode eval" in status
    assert "upload" in status and loaded is None and str(tmp_path) not in status


def test_tradeoff_export_round_trips(client, results_file):
    status, plot, table, point = client.predict(api_name="/load_results")
    assert "Loaded 3 rows" in status and point["value"] == "tigerdecode @ 0.2"
    assert str(results_file.parent) not in status  # the page does not show server folders
    assert [c[0] for c in point["choices"]] == ["tigerdecode @ 0.2", "tigerdecode @ 0.8"]
    chosen, plot = client.predict("tigerdecode @ 0.8", api_name="/pick")
    chosen = json.loads(chosen)
    assert 'class="td-curves-mark"' in plot and "chosen: tigerdecode @ 0.8" in plot
    assert chosen["creativity"] == 0.8 and chosen["source"]["metrics"]["precision"] == 0.6
    msg, path = client.predict("tigerdecode @ 0.8", api_name="/export")
    assert msg.startswith("**Exported.**")
    s = load_settings(path)
    assert s.creativity == 0.8 and s.method == "tigerdecode"


def test_tradeoff_upload_is_this_sessions_table(client, demo_url, tmp_path):
    """An uploaded file drives pick and export for its session only; another session (a new
    client) still sees the launch file."""
    from gradio_client import Client, handle_file

    up = tmp_path / "mine.json"
    up.write_text(json.dumps({"rows": [{"method": "tigerdecode+judge", "setting": "c=0.35",
                                        "error_rate": 0.1, "distinct_2": 0.4}]}))
    status, plot, table, point = client.predict(handle_file(str(up)), api_name="/upload_results")
    assert "Loaded 1 rows (1 methods) from the uploaded file" in status
    assert point["value"] == "tigerdecode+judge @ c=0.35"
    chosen = json.loads(client.predict("tigerdecode+judge @ c=0.35", api_name="/pick")[0])
    assert chosen["creativity"] == 0.35 and chosen["overrides"] == {"judge": True}
    msg, path = client.predict("tigerdecode+judge @ c=0.35", api_name="/export")
    assert msg.startswith("**Exported.**") and load_settings(path).creativity == 0.35
    other = Client(demo_url, verbose=False)
    other.predict(api_name="/load_results")
    with pytest.raises(AppError):  # not among this session's operating points
        other.predict("tigerdecode+judge @ c=0.35", api_name="/pick")
    note, _ = other.predict("tigerdecode @ 0.8", api_name="/pick")
    assert json.loads(note)["creativity"] == 0.8  # the launch file, not the other upload
    client.predict(api_name="/load_results")  # back to the launch file for later tests


@pytest.mark.parametrize("content, words", [
    (b"{not json", "the uploaded file is not valid JSON"),
    (b'{"rows": 3}', "found no 'rows' list"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_tradeoff_bad_upload_keeps_the_table(client, tmp_path, content, words):
    from gradio_client import handle_file

    client.predict(api_name="/load_results")
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    status, *_ = client.predict(handle_file(str(bad)), api_name="/upload_results")
    assert words in status and "Traceback" not in status
    chosen, _ = client.predict("tigerdecode @ 0.8", api_name="/pick")
    assert json.loads(chosen)["creativity"] == 0.8  # the launch table is still there


def test_tradeoff_upload_is_size_bounded(client, demo_backend, tmp_path):
    from gradio_client import handle_file

    from tigerdecode.demos import tradeoff
    from tigerdecode.demos.handlers import Handlers

    big = tmp_path / "big.json"
    big.write_bytes(b" " * (tradeoff.MAX_RESULTS_BYTES + 1))
    with pytest.raises(Exception, match="(?i)too large|exceeds|maximum|413"):
        client.predict(handle_file(str(big)), api_name="/upload_results")
    status, *_ = Handlers(demo_backend).upload_results(big.read_bytes())
    assert f"larger than {tradeoff.MAX_RESULTS_BYTES} bytes" in status
    status, *_ = Handlers(demo_backend).upload_results(None)
    assert "no file arrived" in status


def test_export_round_trips_through_generate_config(client, results_file, tiny_model_dir,
                                                    tiny_llama):
    """The exported file drives `tigerdecode generate --config` and `tigerdecode.generate`."""
    from click.testing import CliRunner

    import tigerdecode
    from tigerdecode.cli import main

    client.predict(api_name="/load_results")  # fills the point choices
    _, path = client.predict("tigerdecode @ 0.8", api_name="/export")
    run = CliRunner().invoke(main, ["generate", "Hello", "--model", str(tiny_model_dir),
                                    "--config", path, "--max-new-tokens", "4", "--seed", "1",
                                    "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.output.strip().splitlines()[-1])
    assert out["creativity"] == 0.8 and out["method"] == "tigerdecode"
    assert len(out["token_ids"]) <= 4
    run = CliRunner().invoke(main, ["generate", "Hello", "--model", str(tiny_model_dir),
                                    "--config", path, "--creativity", "0.1",
                                    "--max-new-tokens", "2", "--json"])
    assert json.loads(run.output.strip().splitlines()[-1])["creativity"] == 0.1  # flag wins

    model, tok = tiny_llama
    inputs = tok(["Hello"], return_tensors="pt")
    kw = dict(tokenizer=tok, heads=None, max_new_tokens=4, seed=1)
    (via_config,) = tigerdecode.generate(model, **inputs, config=path, return_result=True, **kw)
    (direct,) = tigerdecode.generate(model, **inputs, creativity=0.8, return_result=True, **kw)
    assert via_config.creativity == 0.8 and via_config.token_ids == direct.token_ids


def test_generate_config_rejects_what_this_build_lacks(tmp_path, tiny_model_dir):
    from click.testing import CliRunner

    from tigerdecode.cli import main

    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"creativity": 0.3, "overrides": {"no_such_knob": 1}}))
    run = CliRunner().invoke(main, ["generate", "Hi", "--model", str(tiny_model_dir),
                                    "--config", str(bad)])
    assert run.exit_code != 0 and "no_such_knob" in run.output and "supported" in run.output
    bad.write_text(json.dumps({"creativity": 3}))
    run = CliRunner().invoke(main, ["generate", "Hi", "--config", str(bad)])
    assert run.exit_code != 0 and "[0, 1]" in run.output and "Traceback" not in run.output


def test_backend_bounds_personas_and_seed(demo_backend):
    from tigerdecode.demos.backend import InputError

    with pytest.raises(InputError, match="persona is 501 characters"):
        demo_backend.generate("Hi", creativity=0.5, ensemble=("x" * 501, ""))
    with pytest.raises(InputError, match="Seed must lie"):
        demo_backend.generate("Hi", creativity=0.5, seed=-1)
    with pytest.raises(InputError, match=r"Creativity must lie in \[0, 1\]"):
        demo_backend.generate("Hi", creativity=float("nan"))
    with pytest.raises(InputError, match="Samples must be a whole number from 1 to 9"):
        demo_backend.generate("Hi", creativity=0.5, consensus=10)


def test_consensus_draws_samples_and_keeps_the_agreed_with(client):
    """Samples > 1: a waiting line instead of streamed tokens, then one of the samples, with
    the note saying how it was chosen."""
    policy = list(policy_defaults().values())
    job = client.submit("Write a poem about Paris.", 0.8, 6, 0, False, False, "", "", False, 2,
                        3, *policy, api_name="/generate")
    job.result()
    outs = job.outputs()
    assert outs[0][0].startswith("Drawing 3 samples")
    assert not any(o[0].startswith("Generating") for o in outs)  # nothing streamed
    status, pdev, *_, result = outs[-1]
    assert status.startswith("**Done") and len(pdev) == len(result["trace"]) == 6
    assert any(n.startswith("consensus: the most agreed-with 1 of 3") for n in result["notes"])
