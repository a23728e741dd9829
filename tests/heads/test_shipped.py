"""The heads shipped for the default model: found, loadable, small, documented, and sane on the
real model's states."""

import json
from pathlib import Path

import torch

from tigerdecode.heads import ControlHeads, find_shipped
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.model.taps import HiddenStateTap
from tigerdecode.qa.prompts import format_prompt

SHIPPED = Path(__file__).resolve().parents[2] / "heads" / "smollm2-135m-instruct"


def test_shipped_checkpoint_is_found_and_documented(default_model):
    model, tok = default_model
    path = find_shipped(model, tok)
    assert path is not None and path.name == "smollm2-135m-instruct"
    for name in ("config.json", "heads.safetensors", "metrics.json", "MODEL_CARD.md"):
        assert (SHIPPED / name).is_file()
    assert (SHIPPED / "heads.safetensors").stat().st_size < 200_000
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert metrics["validation"]["p_dev"]["token_auroc"] is not None
    assert {"test_topics", "questions"} <= set(metrics["evaluations"])
    heads = ControlHeads.load(path, model=model, tokenizer=tok)
    assert all(1 <= x <= 30 for x in heads.layers)
    assert {c.method for c in heads.calibrators.values()} == {"platt"}


@torch.no_grad()
def test_shipped_heads_flag_a_wrong_fact(default_model):
    model, tok = default_model
    heads = ControlHeads.load(find_shipped(model, tok), model=model, tokenizer=tok)
    user = format_prompt("The capital of France is")
    p_dev = {}
    for answer in ("Paris", "Berlin"):
        enc = encode_prompts(tok, [user])
        ans = tok(f"The capital of France is {answer}.", add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        ids = torch.cat([enc["input_ids"], ans], dim=1)  # (1, P + A)
        with HiddenStateTap(model, heads.layers) as tap:
            model(ids)
            states = {x: tap.states[x][0, -ans.shape[1]:] for x in heads.layers}  # (A, H)
        p_stop, dev = heads(states)[:2]
        assert p_stop.shape == dev.shape == (ans.shape[1],)
        assert ((dev >= 0) & (dev <= 1)).all()
        p_dev[answer] = dev[-2:].mean().item()  # the answer word's last token and the "."
    assert p_dev["Berlin"] > p_dev["Paris"]


def test_creative_requests_never_abstain_under_the_shipped_heads(default_model):
    """"I don't know" is never the answer to a poem: open prompts and creative requests that
    name a fact, at the creativities where abstention is on."""
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.qa.data import dataset_path, load_prompts

    model, tok = default_model
    gen = ControlledGenerator(model, tok)
    prompts = [it.prompt for it in load_prompts(dataset_path("creative_prompts.jsonl"), limit=4)]
    prompts += ["Write a two-line poem about Japan that names its capital.",
                "Write a catchy slogan for a café that celebrates France and names its capital."]
    for c in (0.0, 0.5):
        out = gen.generate_text(prompts, creativity=c, max_new_tokens=24, seed=0)
        assert not any(r.abstained for r in out), [(r.prompt, r.text) for r in out]


@torch.no_grad()
def test_shipped_heads_tell_a_factual_request_from_a_creative_one(default_model):
    """p_factual, read from the prompt's last state: questions and sentences to finish are
    factual requests, poems and stories are not (whatever fact they must name)."""
    model, tok = default_model
    heads = ControlHeads.load(find_shipped(model, tok), model=model, tokenizer=tok)
    assert {"slot", "risk", "factual"} <= set(heads.config.outputs)
    factual = ["What is the capital of Japan?", "Who wrote the play Romeo and Juliet?",
               format_prompt("The capital of France is")]
    creative = ["Write one sentence about a lighthouse keeper who finds a strange map.",
                "Write a two-line poem about Japan that names its capital.",
                "Write a haiku about rain."]
    enc = encode_prompts(tok, factual + creative)
    with HiddenStateTap(model, heads.layers) as tap:
        model(**enc)
        p = heads.signals(tap.last())["factual"]
    assert (p[:3] >= 0.5).all() and (p[3:] < 0.5).all(), p.tolist()
