"""The judge shipped for the default model: found by fingerprint, and a judge of facts that
lets open-ended text through (it was trained with open-prompt answers labelled "not wrong")."""

import json
from pathlib import Path

from tigerdecode.api import ControlledGenerator
from tigerdecode.judge.model import Judge, find_shipped_judge
from tigerdecode.qa.data import load_prompts

SHIPPED = Path(__file__).resolve().parents[2] / "heads" / "smollm2-135m-instruct-judge"


def test_shipped_judge_is_found_and_loads(default_model):
    model, tok = default_model
    path = find_shipped_judge(model, tok)
    assert path is not None and path.name == SHIPPED.name
    judge = Judge.load(path, model=model, tokenizer=tok)
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert 0.5 < metrics["validation_auroc"] <= 1.0
    assert judge.threshold(0.0) < judge.threshold(1.0)


def test_shipped_judge_does_not_abstain_on_creative_prompts(default_model):
    model, tok = default_model
    prompts = [it.prompt for it in load_prompts(
        Path(__file__).resolve().parents[2] / "data" / "creative_prompts.jsonl", limit=4)]
    gen = ControlledGenerator(model, tok)
    out = gen.generate_text(prompts, creativity=0.5, max_new_tokens=24, seed=0, judge=True)
    for r in out:
        assert r.judge is not None
    assert not any(r.abstained for r in out), [r.text for r in out]
    assert all(r.judge.score < r.judge.threshold for r in out)
