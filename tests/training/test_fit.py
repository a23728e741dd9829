"""``tigerdecode fit``: the quick configuration end to end on a tiny fixture model, found by
``heads="auto"`` afterwards; interrupted runs (a full disk, SIGKILL in the data build and after
publishing) resume into the same checkpoint; the budget and every bad input is a clear error."""

import errno
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tigerdecode.cli import main
from tigerdecode.training.fit_plan import (
    N_MAX,
    N_MIN,
    FitError,
    Throughput,
    choose_layers,
    estimate,
    full_plan,
    plan_for_budget,
)

# identical between an interrupted and an uninterrupted fit; metrics.json and MODEL_CARD.md
# differ legitimately (stage timings, the date, the work/out paths they name)
SAME_FILES = ("heads.safetensors", "config.json")
SAME_JUDGE_FILES = ("judge.safetensors", "config.json")


@pytest.fixture(scope="module")
def fit_inputs(tiny_model_dir, tmp_path_factory):
    """A QA file of 30 topics x 2 facts whose gold is the tiny model's own greedy answer (at
    the quick plan's 8 tokens) for one fact of each topic and a word it never says for the
    other, so every relation split holds right and wrong answers; and a few open prompts."""
    from tigerdecode.model.load import load_model
    from tigerdecode.qa.labels import token_pieces
    from tigerdecode.qa.prompts import format_prompt
    from tigerdecode.training.sampling import Setting, sample_answers

    model, tok = load_model(str(tiny_model_dir))
    prompts = [f"The favourite colour of person number {i} is" for i in range(60)]
    res = sample_answers(model, tok, [format_prompt(p) for p in prompts], [1],
                         Setting("greedy"), max_new_tokens=8, seed=0)
    root = tmp_path_factory.mktemp("fit-inputs")
    with (root / "qa.jsonl").open("w") as fh:
        for i, (p, r) in enumerate(zip(prompts, res, strict=True)):
            gold = "".join(token_pieces(tok, r["token_ids"])) if i % 2 == 0 else "zqxj"
            fh.write(json.dumps({"prompt": p, "answers": [gold], "topic": f"t{i // 2:02d}"})
                     + "\n")
    kinds = ("poem", "story", "slogan", "letter", "poem", "story")
    (root / "open.jsonl").write_text("".join(
        json.dumps({"prompt": f"Write a {k} about thing {i}.", "kind": k}) + "\n"
        for i, k in enumerate(kinds)))
    return {"model": str(tiny_model_dir), "qa": str(root / "qa.jsonl"),
            "open": str(root / "open.jsonl")}


def _args(inputs) -> list[str]:
    return ["--qa", inputs["qa"], "--open", inputs["open"], "--creative", inputs["open"]]


def _digest(folder: Path, names) -> dict:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def one_thread():
    """Every fit here on one torch thread, in this process and in the killed children: float
    sums over another thread count may round differently, and a sampled token can follow."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(fit_inputs, tmp_path_factory, one_thread):
    """One uninterrupted `tigerdecode fit --quick` into the default place of a fresh cache."""
    import os

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("TIGERDECODE_CACHE")
    os.environ["TIGERDECODE_CACHE"] = str(cache)
    try:
        res = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--no-progress",
                                        *_args(fit_inputs)])
    finally:
        if old is None:
            os.environ.pop("TIGERDECODE_CACHE")
        else:
            os.environ["TIGERDECODE_CACHE"] = old
    assert res.exit_code == 0, res.output
    heads = next(p for p in (cache / "heads").iterdir() if not p.name.endswith("-judge"))
    return {"cache": cache, "heads": heads, "judge": heads.with_name(heads.name + "-judge"),
            "output": res.output}


def test_quick_fit_end_to_end_then_auto_finds_the_heads(reference, fit_inputs, monkeypatch):
    import tigerdecode
    from tigerdecode.model.load import fingerprint, load_model
    from tigerdecode.training.fit import fit_name

    monkeypatch.setenv("TIGERDECODE_CACHE", str(reference["cache"]))
    heads, judge = reference["heads"], reference["judge"]
    for f in ("config.json", "heads.safetensors", "metrics.json", "MODEL_CARD.md"):
        assert (heads / f).is_file()
    assert (judge / "judge.safetensors").is_file()
    model, tok = load_model(fit_inputs["model"])
    assert heads.name == fit_name(fingerprint(model, tok))
    metrics = json.loads((heads / "metrics.json").read_text())
    test = metrics["evaluations"]["fit_test_relations"]
    assert set(test["baselines"]) >= {"entropy", "max_softmax_prob", "mean_logprob"}
    assert metrics["fit"]["plan"]["n_qa"] == 48
    jm = json.loads((judge / "metrics.json").read_text())["evaluations"]
    assert jm["fit_test_relations"]["n_factual"] > 0 and "wrong_rate_with" in jm["fit_end_to_end"]
    card = (heads / "MODEL_CARD.md").read_text()
    assert "## Held-out relations" in card and "mean_logprob" in card and "--quick" in card
    assert "held-out relations: p_dev answer AUROC" in reference["output"]
    # the bars stage ran; a random tiny model answers too few facts right to choose bars from,
    # so none are stored and the card says why and how to choose them
    assert "policy" not in metrics and "**Abstention bars**: not chosen (" in card
    assert "tigerdecode policy risk --heads DIR" in card

    # heads="auto" now finds them (nothing ships for this model), and the trace carries p_dev
    enc = tok(["The favourite colour of person number 3 is"], return_tensors="pt")
    res = tigerdecode.generate(model, **enc, tokenizer=tok, heads="auto", max_new_tokens=4,
                               creativity=0.5, return_result=True)
    assert res[0].trace and all(t.p_dev is not None for t in res[0].trace)
    out = tigerdecode.generate(model, **enc, tokenizer=tok, max_new_tokens=4, judge=True,
                               return_result=True)  # judge=True finds its judge too
    assert out[0].judge is not None
    info = CliRunner().invoke(main, ["info", "--model", fit_inputs["model"]])
    assert "heads used" in info.output and str(heads) in info.output
    assert str(judge) in info.output

    # a rerun has nothing left to do
    again = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--no-progress",
                                      *_args(fit_inputs)])
    assert again.exit_code == 0, again.output
    assert again.output.count("done in an earlier run") == 9
    # a fit finished before the bars stage existed: the stage runs, and the card is redone
    work = next(p for p in (reference["cache"] / "fit").iterdir() if p.is_dir())
    (work / "done" / "bars.json").unlink()
    again = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--no-progress",
                                      *_args(fit_inputs)])
    assert again.exit_code == 0, again.output
    assert again.output.count("done in an earlier run") == 7
    assert "bars ..." in again.output and "card ..." in again.output
    assert "**Abstention bars**" in (heads / "MODEL_CARD.md").read_text()
    # another --out: published there from the work directory, nothing retrained
    moved = reference["cache"] / "elsewhere" / "h"
    again = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--no-progress",
                                      "--out", str(moved), *_args(fit_inputs)])
    assert again.exit_code == 0, again.output
    assert again.output.count("done in an earlier run") == 7 and "outside" not in again.output
    assert _digest(moved, SAME_FILES) == _digest(heads, SAME_FILES)
    assert (moved / "MODEL_CARD.md").is_file() and (moved.parent / "h-judge").is_dir()
    assert "(not these: pass the folder above explicitly)" in again.output


KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from tigerdecode.training.fit import FitRequest, fit
    torch.set_num_threads(1)  # as the reference run
    stage, at = sys.argv[1], int(sys.argv[2])
    def on_unit(name, done, total):
        if name == stage and done >= at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs
    req = FitRequest(model=sys.argv[3], qa_path=sys.argv[4], open_path=sys.argv[5],
                     creative_path=sys.argv[5], quick=True, out=sys.argv[6],
                     work_dir=sys.argv[7], progress=False)
    fit(req, on_unit=on_unit, log=lambda m: None)
""")


def test_interrupted_fits_resume_into_the_same_checkpoint(reference, fit_inputs, tmp_path,
                                                          monkeypatch, one_thread):
    """A full disk in the first data build, SIGKILL later in that build, SIGKILL in the
    held-out evaluation (after the heads were published); each rerun continues, and the
    weights and configs equal the uninterrupted run's byte for byte."""
    import tigerdecode.training.store as store
    from tigerdecode.training.fit import FitRequest, fit

    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    out, work = tmp_path / "out" / "heads", tmp_path / "work"
    req = FitRequest(model=fit_inputs["model"], qa_path=fit_inputs["qa"],
                     open_path=fit_inputs["open"], creative_path=fit_inputs["open"], quick=True,
                     out=out, work_dir=work, progress=False)

    real_save, calls = store.save_file, []

    def disk_fills_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:  # half a shard written, then ENOSPC
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(store, "save_file", disk_fills_up)
    with pytest.raises(FitError, match="disk filled up during stage data-qa.*rerun the same"):
        fit(req, log=lambda m: None)
    assert not [p for p in work.rglob("*") if ".tmp" in p.name]
    units = json.loads((work / "data_qa" / "manifest.json").read_text())["units"]
    assert len(units) == 2
    monkeypatch.setattr(store, "save_file", real_save)

    for stage, at in (("data-qa", 4), ("eval-heads", 1)):
        run = subprocess.run([sys.executable, "-c", KILLER, stage, str(at), fit_inputs["model"],
                              fit_inputs["qa"], fit_inputs["open"], str(out), str(work)],
                             capture_output=True, text=True)
        assert run.returncode == -9, run.stderr[-3000:]
    assert (out / "heads.safetensors").is_file()  # published before the second kill
    assert not (work / "done" / "card.json").exists()

    res = fit(req, log=lambda m: None)
    assert res["out"] == out
    leftovers = [p for root in (work, out.parent) for p in root.rglob("*") if ".tmp" in p.name]
    assert leftovers == []  # the killed runs' temps were swept
    assert _digest(out, SAME_FILES) == _digest(reference["heads"], SAME_FILES)
    judge = out.with_name("heads-judge")
    assert _digest(judge, SAME_JUDGE_FILES) == _digest(reference["judge"], SAME_JUDGE_FILES)
    assert json.loads((out / "metrics.json").read_text())["evaluations"]["fit_test_relations"] \
        == json.loads((reference["heads"] / "metrics.json").read_text())["evaluations"][
            "fit_test_relations"]


def test_other_options_do_not_resume_a_work_dir(reference, fit_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(reference["cache"]))
    res = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--seed", "3",
                                    "--no-progress", *_args(fit_inputs)])
    assert res.exit_code != 0
    assert "other options (they differ in seed)" in res.output and "--restart" in res.output


def test_one_fit_per_work_dir_and_dead_runs_temps_are_swept(tmp_path):
    from tigerdecode.training.fit import work_lock

    (tmp_path / "data_qa").mkdir()
    stale = tmp_path / "data_qa" / ".shard-00003.safetensors.tmp"
    stale.write_bytes(b"half")
    with work_lock(tmp_path):
        assert not stale.exists()
        with pytest.raises(FitError, match="another `tigerdecode fit` is running"):
            with work_lock(tmp_path):
                pass


# ---- the budget -------------------------------------------------------------------------------

TP = Throughput(decode_s_per_token=1 / 150, sample_s_per_token=1 / 60,
                reencode_s_per_answer=0.01, forms_per_fact=3.0, hidden_size=576, seconds=20.0)


def test_layers_follow_the_depth():
    assert choose_layers(30) == ([12, 16, 20, 24], [[16], [20], [24], [16, 20, 24]])
    assert choose_layers(18)[0] == [7, 10, 12, 14]
    assert choose_layers(4) == ([2, 3], [[2], [3], [2, 3]])
    assert choose_layers(1) == ([1], [[1]])
    with pytest.raises(FitError, match="at least one"):
        choose_layers(0)


def test_budget_scales_the_facts_and_says_what_it_chose():
    small = plan_for_budget(15 * 60, TP, n_layers=30, pool=16000, n_open_available=99)
    large = plan_for_budget(45 * 60, TP, n_layers=30, pool=16000, n_open_available=99)
    assert N_MIN <= small.n_qa < large.n_qa <= N_MAX
    assert sum(large.estimates.values()) <= 45 * 60
    assert "--budget-minutes 45" in large.why and f"chose {large.n_qa} facts" in large.why
    huge = plan_for_budget(10_000 * 60, TP, n_layers=30, pool=16000, n_open_available=99)
    assert huge.n_qa == N_MAX and "the most this command uses" in huge.why
    assert plan_for_budget(10_000 * 60, TP, n_layers=30, pool=500,
                           n_open_available=99).n_qa == 500
    assert "measured 150 greedy / 60 sampled answer tokens/s" in large.why
    # sampled settings are priced apart (top-p sorts the vocabulary every step)
    from dataclasses import replace

    slow = replace(TP, sample_s_per_token=1 / 20)
    assert estimate(full_plan(30), slow)["data-qa"] > estimate(full_plan(30), TP)["data-qa"]
    greedy = replace(full_plan(30), qa_settings="greedy")
    assert estimate(greedy, slow)["data-qa"] == estimate(greedy, TP)["data-qa"]
    assert list(estimate(full_plan(30), TP)) == ["data-qa", "data-open", "heads", "judge",
                                                 "publish", "eval-heads", "bars", "eval-judge", "card"]


def test_a_budget_too_small_names_the_minimum():
    with pytest.raises(FitError) as e:
        plan_for_budget(60, TP, n_layers=30, pool=16000, n_open_available=99, spent_s=20)
    msg = str(e.value)
    assert "a budget of 1 minutes is too small" in msg and "Give --budget-minutes" in msg
    need = int(msg.split("Give --budget-minutes ")[1].split()[0])
    plan_for_budget(need * 60, TP, n_layers=30, pool=16000, n_open_available=99, spent_s=20)


def test_cli_budget_too_small_and_conflicting_options(fit_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    run = CliRunner()
    res = run.invoke(main, ["fit", fit_inputs["model"], "--budget-minutes", "0.05",
                            "--no-progress", *_args(fit_inputs)])
    assert res.exit_code != 0 and "too small to build anything" in res.output
    assert "Give --budget-minutes" in res.output and "Traceback" not in res.output
    res = run.invoke(main, ["fit", fit_inputs["model"], "--budget-minutes", "5", "--quick"])
    assert res.exit_code != 0 and "not both" in res.output
    res = run.invoke(main, ["fit", fit_inputs["model"], "--budget-minutes", "-1"])
    assert res.exit_code != 0 and "positive number of minutes" in res.output


def test_dry_run_measures_and_says_the_plan(fit_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    res = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--budget-minutes", "30",
                                    "--dry-run", "--no-progress", *_args(fit_inputs)])
    assert res.exit_code == 0, res.output
    assert "plan: --budget-minutes 30: measured" in res.output and "chose 48 facts" in res.output
    assert "estimated minutes per stage: data-qa" in res.output
    assert not (tmp_path / "fit").exists() and not (tmp_path / "heads").exists()


# ---- bad input --------------------------------------------------------------------------------

def test_a_path_that_is_no_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "notes.txt").write_text("hello")
    res = CliRunner().invoke(main, ["fit", str(tmp_path / "notes.txt"), "--quick"])
    assert res.exit_code != 0 and "is a file but not a GGUF model" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["fit", str(tmp_path / "empty"), "--quick"])
    assert res.exit_code != 0 and "has no config.json" in res.output


def test_a_gguf_of_an_unknown_architecture_is_named(tmp_path, monkeypatch, tokenizer):
    pytest.importorskip("gguf")
    from gguf_writer import write_tiny_gguf

    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    write_tiny_gguf(tmp_path / "m.gguf", tokenizer, architecture="tigerllm")
    res = CliRunner().invoke(main, ["fit", str(tmp_path / "m.gguf"), "--quick"])
    assert res.exit_code != 0 and "'tigerllm' model, which transformers" in res.output


def test_states_of_another_width_than_hidden_size_are_refused(fit_inputs, tmp_path,
                                                               monkeypatch):
    from tigerdecode.model.load import load_model
    from tigerdecode.training.fit import Fit, FitRequest

    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    model, tok = load_model(fit_inputs["model"])
    model.config.hidden_size = 96  # the config no longer says what the layers give
    fit = Fit(FitRequest(model=fit_inputs["model"], qa_path=fit_inputs["qa"],
                         open_path=fit_inputs["open"], creative_path=fit_inputs["open"],
                         budget_minutes=10, progress=False), model, tok, log=lambda m: None)
    with pytest.raises(FitError, match="states of width 64 but its config says hidden_size 96"):
        fit.measure()


def test_a_qa_file_without_relations_to_split_is_refused_before_any_work(fit_inputs, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    qa = tmp_path / "flat.jsonl"
    qa.write_text("".join(json.dumps({"prompt": f"Fact {i} is", "answers": ["x"]}) + "\n"
                          for i in range(40)))
    res = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--qa", str(qa),
                                    "--no-progress"])
    assert res.exit_code != 0 and "1 train / 0 validation / 0 test relations" in res.output
    assert not list(tmp_path.rglob("manifest.json"))


def test_missing_data_files_are_named(fit_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    res = CliRunner().invoke(main, ["fit", fit_inputs["model"], "--quick", "--qa",
                                    str(tmp_path / "nope.jsonl")])
    assert res.exit_code != 0 and "--qa" in res.output and "is not a file" in res.output


def test_the_card_states_the_bars_the_fit_chose_or_why_not():
    from tigerdecode.eval.risk import chosen_bars
    from tigerdecode.training.fit_card import _bars_line

    assert chosen_bars({"abstain_at": None, "risk_at": None, "too_few_right": 3}) is None
    res = {"abstain_at": 0.9, "risk_at": 0.99, "abstain_rise": None, "risk_rise": 0.0}
    assert chosen_bars(res) == {"abstain_at": 0.9, "risk_at": 0.99, "risk_rise": 0.0}
    line = _bars_line({"policy": {"abstain_at": 0.9, "risk_at": 0.99}, "budget": 0.05,
                       "n_items": 300, "n_right": 80, "n_wrong": 220})
    assert "0.9" in line and "5%" in line and "80 right, 220 wrong" in line
    # the log-probability bar travels with them; the easy part is named on the card
    res = {"abstain_at": 0.95, "risk_at": 0.99, "use_logprob": True, "abstain_logprob": -0.85}
    assert chosen_bars(res) == res
    line = _bars_line({"policy": res, "budget": 0.05, "n_items": 300, "n_easy": 100,
                       "n_right": 80, "n_wrong": 220})
    assert "100 of them easy validation facts" in line and "-0.85" in line
    assert "not chosen (3 right answers" in _bars_line(
        {"policy": None, "why": "3 right answers (at least 20 are needed)"})
    assert "predates" in _bars_line(None)

