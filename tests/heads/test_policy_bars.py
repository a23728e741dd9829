"""Bars chosen for a set of heads travel with them: metrics.json's ``policy`` (written by
`tigerdecode policy risk --write`) is the generator's default for controlled decoding."""

import json

import pytest
import torch
from click.testing import CliRunner

from tigerdecode.api import ControlledGenerator, generate
from tigerdecode.cli import main
from tigerdecode.cli.policy import _write_bars
from tigerdecode.heads.control import ControlHeads, HeadConfig, HeadsError
from tigerdecode.model.load import fingerprint, text_config
from tigerdecode.model.prompting import encode_prompts

ABSTAIN_ALWAYS = {"abstain_at": 0.0, "abstain_from_slot": False, "factual_at": 0.0,
                  "use_slot": False, "abstain_message": "no idea"}


def saved_heads(model, tok, path, policy):
    h = ControlHeads(HeadConfig([1, 2], text_config(model).hidden_size,
                                outputs=["stop", "dev", "slot", "risk", "factual"]),
                     fingerprint(model, tok))
    h.save(path, metrics={"policy": policy} if policy is not None else {})
    return path


def test_the_heads_policy_is_the_default_and_explicit_arguments_win(tiny_llama, tmp_path):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=saved_heads(model, tok, tmp_path / "h",
                                                            ABSTAIN_ALWAYS))
    assert gen.heads.policy == ABSTAIN_ALWAYS
    kw = dict(raw=True, max_new_tokens=6, creativity=0.0)
    (r,) = gen.generate_text(["The capital of Japan is"], **kw)
    assert r.abstained and r.text == "no idea"
    (r,) = gen.generate_text(["The capital of Japan is"], use_abstain=False, **kw)
    assert not r.abstained
    (r,) = gen.generate_text(["The capital of Japan is"], raw=True, max_new_tokens=6,
                             method="greedy")
    assert not r.abstained  # a baseline takes no Policy fields
    inp = encode_prompts(tok, ["The capital of Japan is"], raw=True)
    (r,) = generate(model, **inp, tokenizer=tok, heads=gen.heads, creativity=0.0,
                    max_new_tokens=6, return_result=True)
    assert r.abstained  # the drop-in applies them too
    plain = ControlledGenerator(model, tok, heads=saved_heads(model, tok, tmp_path / "p", None))
    assert plain.heads.policy == {}


def test_a_bad_policy_is_a_clear_error(tiny_llama, tmp_path):
    model, tok = tiny_llama
    with pytest.raises(HeadsError, match="'policy' must map Policy fields"):
        ControlHeads.load(saved_heads(model, tok, tmp_path / "a", [0.9]))
    gen = ControlledGenerator(model, tok, heads=saved_heads(model, tok, tmp_path / "b",
                                                            {"bogus": 1}))
    with pytest.raises(HeadsError, match=r"unknown Policy fields \['bogus'\]"):
        gen.generate_text(["hi"], raw=True, max_new_tokens=2)


def test_policy_risk_writes_the_chosen_bars(tiny_llama, tmp_path):
    model, tok = tiny_llama
    d = saved_heads(model, tok, tmp_path / "h", None)
    _write_bars(d, {"abstain_at": 0.925, "risk_at": 0.8, "abstain_rise": None, "risk_rise": 0.0,
                    "budget": 0.05}, "validation", ("religion",))
    m = json.loads((d / "metrics.json").read_text())
    assert m["policy"] == {"abstain_at": 0.925, "risk_at": 0.8, "risk_rise": 0.0}
    assert "validation" in m["policy_source"] and "religion" in m["policy_source"]
    with torch.no_grad():
        assert ControlHeads.load(d).policy == m["policy"]
    import click

    with pytest.raises(click.ClickException, match="too few"):
        _write_bars(d, {"abstain_at": None, "risk_at": None, "too_few_right": 3, "budget": 0.05},
                    "validation", ())
    assert json.loads((d / "metrics.json").read_text())["policy"] == m["policy"]  # untouched
    r = CliRunner().invoke(main, ["policy", "risk", "--write", "--split", "validation"])
    assert r.exit_code != 0 and "--write stores bars with the heads given by --heads" in r.output
    r = CliRunner().invoke(main, ["policy", "risk", "--write", "--heads", str(d), "--split",
                                  "test"])
    assert r.exit_code != 0 and "other than test" in r.output
