"""Facts inside creative text: rows recomputed from saved outputs, resumable cells, targets."""

import json

from tigerdecode.api import ControlledGenerator
from tigerdecode.eval import creative_facts as cf
from tigerdecode.eval.runner import Cell
from tigerdecode.qa.data import QAItem

ITEMS = [QAItem(prompt="The capital of Japan is", answers=["Tokyo"], topic="capital", id="a"),
         QAItem(prompt="The capital of France is", answers=["Paris"], topic="capital", id="b")]


def test_mixed_items_are_creative_requests_with_gold_answers():
    ms = cf.mixed_items(ITEMS, 2)
    assert len(ms) == 2 and all(m.answers and "#m" in m.id for m in ms)


def test_row_from_outputs_scores_the_same_outputs():
    cell = {"method": "temperature", "setting": "T=1", "gen_method": "temperature",
            "creativity": 0.5}
    outs = [{"prompt": "p1", "answers": ["Tokyo"], "text": "Oh Tokyo, bright", "abstained": False},
            {"prompt": "p1", "answers": ["Tokyo"], "text": "Oh Kyoto bright", "abstained": False},
            {"prompt": "p2", "answers": ["Paris"], "text": "I don't know.", "abstained": True},
            {"prompt": "p2", "answers": ["Paris"], "text": "Paris in spring", "abstained": False}]
    row = cf.row_from_outputs(cell, outs)
    assert row["task"] == "creative_facts" and row["fact_accuracy"] == 0.5
    assert row["abstain_rate"] == 0.25 and 0 < row["distinct_2"] <= 1 and row["creativity"] is None


def test_cells_resume_and_recompute_from_saved_outputs(tiny_llama, tmp_path):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=None)
    cells = [Cell("greedy", "-", "greedy"), Cell("tigerdecode", "c=0.5", "tigerdecode", 0.5)]
    cfg = cf.FactsConfig(items=cf.mixed_items(ITEMS, 2), samples=2, max_new_tokens=4,
                         batch_size=4)
    rows = cf.run({False: gen}, cells, cfg, tmp_path, progress=False)
    saved = json.loads((tmp_path / "creative_facts" / f"{cells[1].slug}.json").read_text())
    assert len(saved["outputs"]) == 4 and saved["row"] == rows[1]
    assert cf.row_from_outputs(saved["cell"], saved["outputs"]) == rows[1]

    class Boom:
        def generate_text(self, *a, **k):
            raise AssertionError("a finished cell was recomputed")

    assert cf.run({False: Boom()}, cells, cfg, tmp_path, progress=False) == rows


def test_targets_compare_at_matched_diversity():
    rows = [{"method": "tigerdecode", "setting": f"c={c}", "creativity": c, "distinct_2": d,
             "fact_accuracy": a, "abstain_rate": 0.0}
            for c, d, a in ((0.0, 0.2, 0.4), (0.5, 0.5, 0.38), (1.0, 0.8, 0.3))]
    rows += [{"method": "greedy", "setting": "-", "creativity": None, "distinct_2": 0.2,
              "fact_accuracy": 0.4, "abstain_rate": 0.0},
             {"method": "temperature", "setting": "T=0.6", "creativity": None,
              "distinct_2": 0.5, "fact_accuracy": 0.2, "abstain_rate": 0.0}]
    t = cf.targets(rows)
    by = {c["baseline"]: c for c in t["dominance"]}
    assert by["temperature"]["ok"] is True and by["greedy"]["ok"] is False
    assert abs(t["at_T0.6_vs_greedy"] - 0.95) < 1e-9 and t["max_abstain_rate"] == 0.0


def test_eval_cli_task_creative_facts(tiny_model_dir, tmp_path):
    from click.testing import CliRunner

    from tigerdecode.cli import main

    args = ["eval", "--task", "creative_facts", "--quick", "--model", str(tiny_model_dir),
            "--heads", "none", "--methods", "greedy,tigerdecode", "--out", str(tmp_path)]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["method"] for r in doc["rows"]] == ["greedy"] + ["tigerdecode"] * 3
    assert all(r["task"] == "creative_facts" and r["n"] == 8 for r in doc["rows"])
    assert {"fact_accuracy", "distinct_2", "abstain_rate"} <= set(doc["rows"][0])
    assert (tmp_path / "creative_facts" / "results.json").is_file()


def test_eval_cli_split_picks_the_topic_split(tiny_model_dir, tmp_path):
    """--split validation draws the mixed prompts from validation topics only (tuning happens
    there; test topics are reported once)."""
    from click.testing import CliRunner

    from tigerdecode.cli import main
    from tigerdecode.qa.data import load_qa, qa_wikidata_path, split_topics

    topics = split_topics(load_qa(qa_wikidata_path()))
    args = ["eval", "--task", "creative_facts", "--quick", "--model", str(tiny_model_dir),
            "--heads", "none", "--methods", "greedy", "--json"]
    seen = {}
    for split in ("validation", "test"):
        out = tmp_path / split
        res = CliRunner().invoke(main, [*args, "--split", split, "--out", str(out)])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout.strip().splitlines()[-1])
        assert doc["meta"]["split"] == split
        saved = json.loads(next((out / "creative_facts").glob("greedy*.json")).read_text())
        ids = {o["id"].split("#")[0] for o in saved["outputs"]}
        by_id = {it.id: it.topic for it in load_qa(qa_wikidata_path())}
        assert ids and all(by_id[i] in set(topics[split]) for i in ids), split
        seen[split] = ids
    assert not seen["validation"] & seen["test"]


def test_eval_cli_tradeoff_forms_refuses_mixed(tmp_path):
    from click.testing import CliRunner

    from tigerdecode.cli import main

    res = CliRunner().invoke(main, ["eval", "--forms", "question,mixed", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--task creative_facts" in res.output
    res = CliRunner().invoke(main, ["eval", "--forms", "questions", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown prompt form" in res.output


def test_consensus_cells_only_on_request_and_counted_against_their_like():
    from tigerdecode.eval.runner import CONSENSUS, grid

    assert not any("consensus" in c.method for c in grid())
    cells = grid(methods=["tigerdecode+consensus", "temperature+consensus"])
    assert {c.method for c in cells} == {"tigerdecode+consensus", "temperature+consensus"}
    assert all(dict(c.overrides)["consensus"] == CONSENSUS for c in cells)
    row = lambda m, s, c, d, a: {"method": m, "setting": s, "creativity": c,  # noqa: E731
                                 "distinct_2": d, "fact_accuracy": a, "abstain_rate": 0.0}
    rows = [row("tigerdecode", f"c={c}", c, d, a) for c, d, a in ((0.0, 0.2, 0.4), (1.0, 0.8, 0.3))]
    rows += [row("tigerdecode+consensus", f"c={c}", c, d, a)
             for c, d, a in ((0.25, 0.3, 0.5), (1.0, 0.8, 0.4))]
    rows += [row("temperature", "T=0.6", None, 0.5, 0.2),
             row("temperature+consensus", "T=0.6", None, 0.5, 0.3)]
    plain = cf.targets(rows)
    assert [c["baseline"] for c in plain["dominance"]] == ["temperature"]
    cons = cf.targets(rows, "tigerdecode+consensus")
    assert {c["baseline"] for c in cons["dominance"]} == {"temperature", "temperature+consensus"}
