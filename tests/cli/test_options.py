"""The shared options: one meaning each (--limit first N, --sample a seeded N, --out atomic)."""

import json
import random

import click
import pytest
from click.testing import CliRunner

from tigerdecode.cli import main
from tigerdecode.cli.options import Creativity, parse_sets, pick, write_json


def test_pick_limit_is_the_first_n_and_sample_is_seeded():
    items = list(range(20))
    assert pick(items, limit=3) == [0, 1, 2]
    assert pick(items, sample=3, seed=5) == random.Random(5).sample(items, 3)
    assert pick(items, sample=3, seed=5) == pick(items, sample=3, seed=5)
    assert pick(items, sample=50) == items and pick(items) == items
    with pytest.raises(click.UsageError, match="not both"):
        pick(items, limit=2, sample=2)


def test_parse_sets_reads_json_values_and_rejects_unknown_fields():
    assert parse_sets(["abstain_at=0.9", "use_abstain=false", "abstain_message=No idea."]) == {
        "abstain_at": 0.9, "use_abstain": False, "abstain_message": "No idea."}
    for bad in (["creativity=0.5"], ["nope=1"], ["abstain_at"]):
        with pytest.raises(click.BadParameter, match="Policy field"):
            parse_sets(bad)


def test_creativity_type():
    assert Creativity().convert("0.25", None, None) == 0.25
    assert Creativity(many=True).convert("0,0.5,1", None, None) == (0.0, 0.5, 1.0)
    for bad in ("1.5", "nan", "x", "-0.1"):
        with pytest.raises(click.BadParameter):
            Creativity().convert(bad, None, None)


def test_write_json_is_atomic(tmp_path):
    out = write_json(tmp_path / "sub" / "r.json", {"a": 1})
    assert json.loads(out.read_text()) == {"a": 1}

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json(out, {"a": Boom()})  # fails half-way through the dump
    assert json.loads(out.read_text()) == {"a": 1}  # the old file is untouched
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temp file left


@pytest.fixture
def qa10(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "answers": [str(i)],
                                        "topic": f"t{i % 3}"}) + "\n" for i in range(10)))
    return path


def test_data_build_limit_is_the_first_n(monkeypatch, tiny_model_dir, qa10, tmp_path):
    """`data build --limit` used to draw a seeded random sample; now it takes the first N, and
    `--sample N --seed S` draws exactly what `--limit N --seed S` used to."""
    import tigerdecode.training.build as build

    seen = []

    class Store:
        def manifest(self):
            return {"units": []}

    def fake_build(model, tok, items, out, **kw):
        seen.append([it.prompt for it in items])
        return Store()

    monkeypatch.setattr(build, "build_data", fake_build)
    base = ["data", "build", "--qa", str(qa10), "--model", str(tiny_model_dir), "--out",
            str(tmp_path / "d")]
    res = CliRunner().invoke(main, [*base, "--limit", "3"])
    assert res.exit_code == 0, res.output
    assert seen[-1] == ["Question 0?", "Question 1?", "Question 2?"]
    res = CliRunner().invoke(main, [*base, "--sample", "3", "--seed", "4"])
    assert res.exit_code == 0, res.output
    old = random.Random(4).sample([f"Question {i}?" for i in range(10)], 3)
    assert seen[-1] == old
    res = CliRunner().invoke(main, [*base, "--limit", "3", "--sample", "3"])
    assert res.exit_code == 2 and "not both" in res.output


def test_eval_limit_is_the_first_n(monkeypatch, tiny_model_dir, qa10, tmp_path):
    """`eval --limit` used to take every k-th item; now it takes the first N."""
    import tigerdecode.eval.runner as runner

    seen = []

    def fake_run_eval(gens, cells, cfg, out, **kw):
        seen.append([it.prompt for it in cfg.qa])
        return []

    monkeypatch.setattr(runner, "run_eval", fake_run_eval)
    res = CliRunner().invoke(main, ["eval", "--qa", str(qa10), "--limit", "3", "--model",
                                    str(tiny_model_dir), "--out", str(tmp_path / "e"),
                                    "--methods", "greedy", "--quick"])
    assert "no computed cells" in res.output, res.output
    assert seen == [["Question 0?", "Question 1?", "Question 2?"]]
