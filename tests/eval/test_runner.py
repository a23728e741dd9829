"""The evaluation runner: rows computed from the saved outputs, resume, report files, CLI."""

import json
import shutil

import pytest
from click.testing import CliRunner

from tigerdecode.api import ControlledGenerator
from tigerdecode.eval.metrics import distinct_n, factual_rates, self_bleu
from tigerdecode.eval.report import COLUMNS, targets, write_report
from tigerdecode.eval.runner import Cell, EvalConfig, grid, judge_outcome, run_eval
from tigerdecode.qa.data import QAItem

QA = [QAItem("The capital of Japan is", ["Tokyo"], id="1", topic="capital"),
      QAItem("The capital of France is", ["Paris"], id="2", topic="capital"),
      QAItem("The currency of Japan is", ["yen", "Japanese yen"], id="3", topic="currency")]
CELLS = [Cell("greedy", "-", "greedy"),
         Cell("temperature", "T=1", "temperature", overrides=(("temperature", 1.0),)),
         Cell("tigerdecode", "c=0", "tigerdecode", creativity=0.0),
         Cell("tigerdecode", "c=1", "tigerdecode", creativity=1.0)]


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    model, tok = tiny_llama
    out = tmp_path_factory.mktemp("eval")
    cfg = EvalConfig(qa=QA, creative=["Write a poem.", "Describe a fruit."], samples=2,
                     fact_tokens=6, creative_tokens=8, batch_size=4, seed=1)
    gens = {False: ControlledGenerator(model, tok, heads=None)}
    rows = run_eval(gens, CELLS, cfg, out, progress=False)
    return gens, cfg, out, rows


def test_rows_are_computed_from_the_saved_outputs(run):
    _, cfg, out, rows = run
    assert [(r["method"], r["setting"]) for r in rows] == [(c.method, c.setting) for c in CELLS]
    for cell, row in zip(CELLS, rows, strict=True):
        saved = json.loads((out / "cells" / f"{cell.slug}.json").read_text())
        fact, crea = saved["outputs"]["factual"], saved["outputs"]["creative"]
        assert len(fact) == 3 and len(crea) == 4
        outcomes = [judge_outcome(QA[i], f["text"], False) for i, f in enumerate(fact)]
        assert outcomes == [f["outcome"] for f in fact]
        for k, v in factual_rates(outcomes).items():
            assert row[k] == pytest.approx(v, nan_ok=True)
        texts = [c["text"] for c in crea]
        assert row["distinct_2"] == pytest.approx(distinct_n(texts, 2))
        assert row["self_bleu"] == pytest.approx((self_bleu(texts[:2]) + self_bleu(texts[2:])) / 2)
        assert set(COLUMNS) <= set(row)


def test_runs_are_deterministic_given_the_seed(run, tmp_path):
    gens, cfg, out, rows = run
    cell = CELLS[1]  # temperature 1: sampled
    again = run_eval(gens, [cell], cfg, tmp_path, progress=False)

    def texts(folder):
        saved = json.loads((folder / "cells" / f"{cell.slug}.json").read_text())["outputs"]
        return [x["text"] for x in saved["factual"] + saved["creative"]]

    assert texts(tmp_path) == texts(out)
    drop = {"tokens_per_s"}  # wall-clock, the only field allowed to differ
    assert {k: v for k, v in again[0].items() if k not in drop} == \
        {k: v for k, v in rows[1].items() if k not in drop}


def test_resume_skips_finished_cells(run, monkeypatch):
    gens, cfg, out, rows = run

    def boom(*a, **k):
        raise AssertionError("a finished cell was generated again")

    monkeypatch.setattr(gens[False], "generate_text", boom)
    assert run_eval(gens, CELLS, cfg, out, progress=False) == rows


def test_changed_config_recomputes(run, tmp_path):
    gens, cfg, out, rows = run
    shutil.copytree(out, tmp_path / "copy")  # leave the shared run's cells untouched
    cfg2 = EvalConfig(qa=QA[:2], creative=cfg.creative, samples=2, fact_tokens=6,
                      creative_tokens=8, batch_size=4, seed=1)
    new = run_eval(gens, CELLS[:1], cfg2, tmp_path / "copy", progress=False)
    assert new[0]["n_qa"] == 2


def test_report_files_and_targets(run, tmp_path):
    _, _, _, rows = run
    doc = write_report(rows, tmp_path, {"quick": True})
    for name in ("results.json", "results.csv", "results.md", "tradeoff.png",
                 "tradeoff-right.png"):
        assert (tmp_path / name).stat().st_size > 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["rows"]) == len(rows) and "targets" in data
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(doc["targets"]["dominance"]) == 2  # greedy and temperature
    # Every tigerdecode variant with a curve gets its own checks, in the JSON and the markdown.
    swept = {r["method"] for r in rows if r["method"].startswith("tigerdecode")
             and sum(x["method"] == r["method"] for x in rows) >= 2}
    assert set(data["targets_by_method"]) == swept and "tigerdecode" in swept
    md = (tmp_path / "results.md").read_text()
    assert all(f"Targets for `{m}`" in md for m in swept)


def test_targets_on_hand_made_rows():
    def row(m, s, c, err, acc, d2):
        return {"method": m, "setting": s, "creativity": c, "error_rate": err, "accuracy": acc,
                "distinct_2": d2, "precision": acc / max(acc + err, 1e-9)}

    rows = [row("tigerdecode", "c=0", 0.0, 0.2, 0.5, 0.3),
            row("tigerdecode", "c=1", 1.0, 0.4, 0.4, 0.7),
            row("temperature", "T=0.7", None, 0.5, 0.45, 0.5),  # ours at 0.5: err .3, acc .45
            row("temperature", "T=1.2", None, 0.45, 0.5, 0.6),  # ours: err .35, acc .425
            row("top_p", "p=0.99", None, 0.9, 0.1, 0.9),  # more diverse than our whole curve
            row("greedy", "-", None, 0.4, 0.5, 0.2),  # less diverse: vs our c=0 (err .2, acc .5)
            row("dola", "high", None, 0.25, 0.6, 0.25)]  # less diverse, more right than our c=0
    t = targets(rows)
    verdict = [c["dominated"] for c in t["dominance"]]
    assert verdict == [True, False, None, True, False]
    assert t["dominance"][0]["ours_error"] == pytest.approx(0.3)
    assert [c["compared_at"] for c in t["dominance"]] == [
        "interpolated", "interpolated", None, "least diverse point (c=0)",
        "least diverse point (c=0)"]
    assert t["dominance"][3]["ours_error"] == pytest.approx(0.2)
    assert t["dominance"][3]["error_reduction"] == pytest.approx(0.5)
    assert t["spearman_error"] == pytest.approx(1.0) and not t["dominated_all"]


def test_grid_and_bad_methods():
    assert {c.method for c in grid(quick=False)} >= {
        "greedy", "temperature", "top_p", "min_p", "factual_nucleus", "dola", "tigerdecode",
        "tigerdecode+ensemble"}
    assert "tigerdecode+judge" not in {c.method for c in grid(quick=False)}
    judged = [c for c in grid(quick=False, judge=True) if c.method == "tigerdecode+judge"]
    assert [c.creativity for c in judged] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(dict(c.overrides) == {"judge": True} for c in judged)
    with pytest.raises(ValueError, match="unknown method"):
        grid(quick=True, methods=["beam"])


def test_cli_quick_on_the_default_model(tmp_path):
    from tigerdecode.cli import main

    res = CliRunner().invoke(main, ["eval", "--quick", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    methods = {r["method"] for r in doc["rows"]}
    assert {c.method for c in grid(quick=True)} <= methods <= {
        c.method for c in grid(quick=True, judge=True)}
    for r in doc["rows"]:
        for k in ("error_rate", "abstain_rate", "precision", "distinct_2", "self_bleu",
                  "tokens_per_s"):
            assert k in r
        assert 0 <= r["error_rate"] <= 1 and 0 <= r["distinct_2"] <= 1
    assert (tmp_path / "tradeoff.png").is_file()


def test_cached_only_reports_finished_cells_without_generating(run, monkeypatch):
    gens, cfg, out, rows = run
    monkeypatch.setattr(gens[False], "generate_text", lambda *a, **k: 1 / 0)
    extra = Cell("top_p", "p=0.5", "top_p", overrides=(("top_p", 0.5),))  # never computed
    got = run_eval(gens, CELLS + [extra], cfg, out, progress=False, cached_only=True)
    assert got == rows


def test_cached_cells_follow_the_policy_defaults():
    from tigerdecode.eval.runner import policy_defaults

    pol = policy_defaults()
    assert pol["use_abstain"] is not None and "creativity" not in pol
    cfg = EvalConfig(qa=QA[:2], creative=["Write a poem."], extra={"policy": pol})
    changed = EvalConfig(qa=QA[:2], creative=["Write a poem."],
                         extra={"policy": {**pol, "use_abstain": not pol["use_abstain"]}})
    ours, base = Cell("tigerdecode", "c=0", "tigerdecode"), Cell("greedy", "-", "greedy")
    assert cfg.digest(ours) != changed.digest(ours)  # a new default recomputes our cells
    assert cfg.digest(base) == changed.digest(base)  # and leaves the baselines cached


def test_policy_overrides_reach_only_the_tigerdecode_cells(tiny_llama, tmp_path):
    model, tok = tiny_llama
    inner = ControlledGenerator(model, tok, heads=None)
    calls = []

    class Recording:
        def generate_text(self, prompts, **kw):
            calls.append((kw["method"], kw.get("eos_gain"), kw.get("use_abstain")))
            return inner.generate_text(prompts, **kw)

    cfg = EvalConfig(qa=QA[:2], creative=["Write a poem."], samples=2, fact_tokens=3,
                     creative_tokens=3, batch_size=4,
                     policy_overrides={"eos_gain": 1.5, "use_abstain": False})
    run_eval({False: Recording()}, [CELLS[0], CELLS[2]], cfg, tmp_path, progress=False)
    assert {c for c in calls if c[0] == "greedy"} == {("greedy", None, None)}
    assert {c for c in calls if c[0] == "tigerdecode"} == {("tigerdecode", 1.5, False)}
