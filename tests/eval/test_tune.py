"""`tigerdecode policy tune` (the ablation of the head uses): item selection, the bar table, the
command's wiring, and one tiny real run on the default model."""

import json
import random

from click.testing import CliRunner

from tigerdecode.cli import main
from tigerdecode.eval import tune
from tigerdecode.eval.tune import bars_table, qa_items


def test_qa_items_limit_is_first_n_and_sample_is_the_documented_draw():
    from tigerdecode.qa.data import load_qa, qa_wikidata_path, select_split

    split = select_split(load_qa(qa_wikidata_path()), "validation")
    assert [it.prompt for it in qa_items("validation", limit=3)] == [it.prompt for it in split[:3]]
    old = list(split)  # what `python -m tigerdecode.policy_tune --limit 5` decoded
    random.Random(0).shuffle(old)
    assert [it.prompt for it in qa_items("validation", sample=5)] == [it.prompt for it in old[:5]]


def test_bars_table_counts_kept_and_caught():
    res = {"rows": [{"creativity": 0.0, "variant": "eos_bias", "bars": [
        {"bar": 0.95, "right_kept": 9, "right": 10, "wrong_caught": 30, "wrong": 40}]},
        {"creativity": 0.0, "variant": "abstain"}]}  # abstaining variants have no bar rows
    lines = bars_table(res).splitlines()
    assert len(lines) == 3
    assert lines[2] == "| 0 | eos_bias | 0.95 | 9/10 (90%) | 30/40 (75%) |"


ROW = {"creativity": 0.5, "variant": "plain", "n": 2, "right": 1, "wrong": 1, "abstain": 0,
       "accuracy": 0.5, "error_rate": 0.5, "precision": 0.5, "mean_tokens": 3.0, "seconds": 0.1,
       "open_n": 1, "open_abstain": 0, "open_resampled_tokens": 0.0, "open_distinct_2": 1.0}


def test_tune_command_wiring(monkeypatch, tmp_path):
    calls = []

    def fake_run(limit, creativities, names, max_new_tokens, **kw):
        calls.append(dict(limit=limit, creativities=creativities, names=names, **kw))
        return {"rows": [ROW], "settings": {"limit": limit, "sample": kw["sample"]}}

    monkeypatch.setattr(tune, "run", fake_run)
    run = CliRunner()
    res = run.invoke(main, ["policy", "tune", "--creativity", "0,0.5", "--variants", "plain",
                            "--set", "abstain_at=0.8"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("| creativity | variant |")
    c = calls[-1]
    assert c["limit"] is None and c["sample"] == 96 and c["seed"] == 0  # the documented default
    assert c["creativities"] == (0.0, 0.5) and c["names"] == ["plain"]
    assert c["overrides"] == {"abstain_at": 0.8} and c["split"] == "validation"

    out = tmp_path / "r.json"
    res = run.invoke(main, ["policy", "tune", "--limit", "2", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == json.loads(out.read_text())
    assert calls[-1]["limit"] == 2 and calls[-1]["sample"] is None

    for bad, why in ((["--variants", "nope"], "unknown variants"), (["--bars", "2"], "[0, 1]"),
                     (["--limit", "2", "--sample", "2"], "not both"),
                     (["--creativity", "0,1.5"], "creativity must lie in [0, 1]")):
        res = run.invoke(main, ["policy", "tune", *bad])
        assert res.exit_code == 2 and why in res.output, (bad, res.output)


def test_tune_runs_on_the_default_model(default_model):
    res = CliRunner().invoke(main, ["policy", "tune", "--limit", "2", "--creativity", "0",
                                    "--variants", "plain,abstain", "--n-open", "1",
                                    "--max-new-tokens", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["variant"] for r in out["rows"]] == ["plain", "abstain"]
    for r in out["rows"]:
        assert r["n"] == 2 and r["right"] + r["wrong"] + r["abstain"] == 2 and r["open_n"] == 1
    assert out["settings"]["limit"] == 2 and out["settings"]["sample"] is None


def test_tune_is_logic_only():
    """The ablation is a command now (`policy tune`), not a `python -m` script."""
    assert not hasattr(tune, "main") and "click" not in tune.__dict__
