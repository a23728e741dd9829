"""Tiny end to end on a fixture model: data build -> heads train -> heads eval, via the CLI."""

import json

import pytest
from click.testing import CliRunner

from tigerdecode.cli import main
from tigerdecode.heads import ControlHeads, HeadConfig, HeadsError
from tigerdecode.qa.labels import token_pieces
from tigerdecode.qa.prompts import format_prompt
from tigerdecode.training.sampling import Setting, sample_answers


@pytest.fixture(scope="module")
def qa_file(tiny_model_dir, tmp_path_factory):
    """Items whose gold is the tiny model's own greedy answer (so some answers are right) or
    a word it never says; two items a topic so a validation topic holds both kinds."""
    from tigerdecode.model.load import load_model

    model, tok = load_model(str(tiny_model_dir))
    prompts = [f"The favourite colour of person number {i} is" for i in range(12)]
    res = sample_answers(model, tok, [format_prompt(p) for p in prompts], [1],
                         Setting("greedy"), max_new_tokens=6, seed=0)
    path = tmp_path_factory.mktemp("qa") / "tiny.jsonl"
    with path.open("w") as fh:
        for i, (p, r) in enumerate(zip(prompts, res, strict=True)):
            gold = "".join(token_pieces(tok, r["token_ids"])) if i % 2 == 0 else "zqxj"
            fh.write(json.dumps({"prompt": p, "answers": [gold], "topic": f"t{i // 2}"}) + "\n")
    return path


def test_build_train_eval(tiny_model_dir, qa_file, tmp_path):
    run = CliRunner()
    model = ["--model", str(tiny_model_dir)]
    opts = ["--settings", "greedy,1.0", "--max-new-tokens", "6", "--batch-size", "6"]
    res = run.invoke(main, ["data", "build", "--qa", str(qa_file), "--out", str(tmp_path / "d"),
                            "--layers", "2,4", *opts, *model])
    assert res.exit_code == 0, res.output
    assert "24 answers" in res.output
    res = run.invoke(main, ["heads", "train", "--data", str(tmp_path / "d"), "--out",
                            str(tmp_path / "h"), "--layers", "2,4,2+4", "--kind", "linear,mlp",
                            "--max-epochs", "5"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert len(metrics["trials"]) == 6 and metrics["data"]["n_answers"] == 24
    assert cfg["head"]["layers"] == metrics["selected"]["layers"]
    # the choice is the best mean over the topic splits (three by default; a split that leaves
    # one side empty is skipped), and the first split's own AUROC is the first of them
    for trial in metrics["trials"]:
        sel = trial["select"]
        assert 2 <= sel["splits"] <= 3 and len(sel["dev_token_auroc_each"]) == sel["splits"]
        assert sel["dev_token_auroc_each"][0] == trial["val_dev_token_auroc"]
    means = [(t["select"]["dev_token_auroc"] or 0.0, t["select"]["stop_auroc"] or 0.0)
             for t in metrics["trials"]]
    chosen = next(t for t in metrics["trials"] if t["layers"] == metrics["selected"]["layers"]
                  and t["kind"] == metrics["selected"]["kind"])
    assert (chosen["select"]["dev_token_auroc"] or 0.0,
            chosen["select"]["stop_auroc"] or 0.0) == max(means)
    # linear heads are the average over the splits; MLP heads are the first split's
    assert metrics["selected"]["averaged_splits"] == (
        chosen["select"]["splits"] if chosen["kind"] == "linear" else 1)
    assert cfg["calibration"]["stop"] == "platt" and cfg["calibration"]["dev"] == "platt"
    # the forward-looking head trains when the data holds enough fact-slot tokens
    assert ("slot" in cfg["calibration"]) == (metrics["slot"] is not None)
    if metrics["slot"] is not None:
        # (linear heads also gain the forward-looking risk / factual outputs when the data
        # allows; the tiny data has no creative requests, so never p_factual)
        assert cfg["head"]["outputs"][:3] == ["stop", "dev", "slot"]
        assert set(cfg["head"]["outputs"][3:]) <= {"risk"}
        assert 0 <= metrics["slot"]["auroc"] <= 1
        assert set(metrics["slot"]["baselines"]) == {"entropy", "1-maxprob"}
    assert 0 <= metrics["validation"]["p_dev"]["ece"] <= 1

    res = run.invoke(main, ["heads", "eval", "--heads", str(tmp_path / "h"), "--qa", str(qa_file),
                            "--limit", "8", "--json", "--record", "tiny", *opts, *model])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_answers"] == 16
    assert set(out["p_dev"]) >= {"token_auroc", "answer_auroc", "ece"}
    assert set(out["p_stop"]) >= {"auroc"}
    assert set(out["baselines"]) == {"max_softmax_prob", "entropy", "mean_logprob",
                                     "next_eos_prob"}
    assert set(out["baselines"]["entropy"]) == {"token_auroc", "answer_auroc"}
    for v in (out["p_dev"]["token_auroc"], out["p_dev"]["answer_auroc"], out["p_dev"]["ece"]):
        assert v is None or 0 <= v <= 1
    recorded = json.loads((tmp_path / "h" / "metrics.json").read_text())["evaluations"]["tiny"]
    assert recorded["n_answers"] == 16 and recorded["limit"] == 8

    table = run.invoke(main, ["heads", "eval", "--heads", str(tmp_path / "h"), "--qa",
                              str(qa_file), "--limit", "2", *opts, *model])
    assert table.exit_code == 0 and "heads p_dev / p_stop" in table.output


def test_eval_refuses_heads_of_another_model(tiny_model_dir, qa_file, tmp_path, tokenizer):
    from tigerdecode.model.load import fingerprint
    from tiny_models import build_tiny_model

    other = build_tiny_model("gpt2", tokenizer)
    path = ControlHeads(HeadConfig(layers=[2], hidden_size=64),
                        fingerprint(other, tokenizer)).save(tmp_path / "h")
    res = CliRunner().invoke(main, ["heads", "eval", "--heads", str(path), "--qa", str(qa_file),
                                    "--model", str(tiny_model_dir), "--limit", "1"])
    assert res.exit_code != 0 and "was trained for" in res.output
    with pytest.raises(HeadsError, match="has no config.json"):
        ControlHeads.load(tmp_path / "missing")


def test_train_needs_data(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["heads", "train", "--data", str(tmp_path / "empty"),
                                    "--out", str(tmp_path / "h")])
    assert res.exit_code != 0 and "no manifest.json" in res.output


def test_open_prompts_teach_p_dev_without_touching_the_fact_metrics(tiny_model_dir, qa_file,
                                                                     tmp_path):
    """`data build --open` labels every token of a creative answer OPEN_TEXT (-2), stop -1;
    `heads train` learns them as p_dev = 0 but scores only factual answers, and reports the
    open text's p_dev on its own."""
    import numpy as np

    from tigerdecode.qa.labels import OPEN_TEXT
    from tigerdecode.training.store import FeatureStore
    from tigerdecode.training.train import dev_targets

    run = CliRunner()
    model = ["--model", str(tiny_model_dir)]
    opts = ["--settings", "greedy,1.0", "--max-new-tokens", "6", "--batch-size", "6",
            "--layers", "2,4", *model]
    opens = tmp_path / "open.jsonl"
    opens.write_text("".join(json.dumps({"prompt": f"Write a poem about thing {i}.",
                                         "kind": f"k{i % 3}"}) + "\n" for i in range(6)))
    res = run.invoke(main, ["data", "build", "--open", str(opens), "--out", str(tmp_path / "o"),
                            *opts])
    assert res.exit_code == 0, res.output
    t, answers = FeatureStore(tmp_path / "o").load([2])
    assert len(answers) == 12 and all(a["open"] and a["correct"] is None for a in answers)
    assert set(t["dev"].tolist()) == {OPEN_TEXT} and set(t["stop"].tolist()) == {-1}
    assert {a["topic"] for a in answers} == {"open:k0", "open:k1", "open:k2"}

    res = run.invoke(main, ["data", "build", "--qa", str(qa_file), "--out", str(tmp_path / "d"),
                            *opts])
    assert res.exit_code == 0, res.output
    res = run.invoke(main, ["heads", "train", "--data", str(tmp_path / "d"), "--data",
                            str(tmp_path / "o"), "--out", str(tmp_path / "h"), "--layers", "2",
                            "--max-epochs", "3", "--val-fraction", "0.5"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert metrics["data"]["n_open_answers"] == 12 and metrics["data"]["n_answers"] == 36
    assert metrics["validation"]["n_answers"] <= 24  # factual answers only
    open_val = metrics["validation"]["open_text"]  # this seed puts an open kind in validation
    assert open_val["n_tokens"] > 0 and 0 <= open_val["mean_p_dev"] <= 1

    # the judge learns to accept free text: label 0, read after the prompt as it was asked
    from tigerdecode.model.load import load_model
    from tigerdecode.training.judge_train import JudgeTrainConfig, load_training_set, open_side

    m, tok = load_model(str(tiny_model_dir))
    x, y, topics, _ = load_training_set(m, tok, tmp_path / "o", JudgeTrainConfig(layers=(2,)))
    assert x.shape[0] == 12 and y.tolist() == [0] * 12 and topics[0].startswith("open:")
    assert {open_side(f"open:{k}") for k in ("poem", "story", "slogan")} == {"train",
                                                                               "validation"}
    assert open_side("capital") == "train"

    dev = np.array([OPEN_TEXT, -1, 0, 1], dtype=np.int8)
    assert dev_targets(dev, True).tolist() == [0, 0, 0, 1]
    assert dev_targets(dev, False).tolist() == [0, -1, 0, 1]

    both = run.invoke(main, ["data", "build", "--qa", str(qa_file), "--open", str(opens),
                             "--out", str(tmp_path / "x"), *opts])
    assert both.exit_code != 0 and "exactly one of --qa" in both.output


def test_forward_looking_outputs_train_end_to_end_and_drive_generation(tiny_model_dir, qa_file,
                                                                        tmp_path):
    """On the tiny fixture: data with prompt states (facts and open prompts) → heads with
    p_slot, p_risk and p_factual → a generation whose trace carries p_risk."""
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.model.load import load_model

    run = CliRunner()
    opts = ["--settings", "greedy,1.0", "--max-new-tokens", "6", "--batch-size", "8",
            "--layers", "2", "--model", str(tiny_model_dir)]
    opens = tmp_path / "open.jsonl"
    opens.write_text("".join(json.dumps({"prompt": f"Write a {k} about thing {i}.",
                                         "kind": k}) + "\n"
                             for i in range(4) for k in ("poem", "story", "song")))
    for flag, path, out in (("--qa", qa_file, "d"), ("--open", opens, "o")):
        res = run.invoke(main, ["data", "build", flag, str(path), "--out", str(tmp_path / out),
                                *opts])
        assert res.exit_code == 0, res.output
    res = run.invoke(main, ["heads", "train", "--data", str(tmp_path / "d"), "--data",
                            str(tmp_path / "o"), "--out", str(tmp_path / "h"), "--layers", "2",
                            "--max-epochs", "3", "--val-fraction", "0.5"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert cfg["head"]["outputs"] == ["stop", "dev", "slot", "risk", "factual"], res.output
    v = metrics["factual"]["validation"]
    assert v["n_factual"] > 0 and v["n_creative"] > 0 and 0 <= v["auroc"] <= 1
    first = metrics["risk"]["validation"]["first_slot"]
    assert first["n"] > 0 and set(first["baselines"]) == {"1-maxprob", "entropy"}

    res = run.invoke(main, ["heads", "eval", "--heads", str(tmp_path / "h"), "--qa",
                            str(qa_file), "--open", str(opens), "--limit", "4", "--json",
                            *opts[:6], "--model", str(tiny_model_dir)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["p_factual"]["n_factual"] == 4 and out["p_factual"]["n_creative"] == 12
    assert out["n_answers"] == 8  # p_dev / p_stop: the facts' answers only
    assert "first_slot" in out["p_risk"]["all"]

    model, tok = load_model(str(tiny_model_dir))
    heads = ControlHeads.load(tmp_path / "h", model=model, tokenizer=tok)
    gen = ControlledGenerator(model, tok, heads=heads)
    (r,) = gen.generate_text(["The favourite colour of person number 3 is"], creativity=0.0,
                             max_new_tokens=4, seed=0)
    assert r.trace and all(t.p_risk is not None and 0 <= t.p_risk <= 1 for t in r.trace)


def test_averaged_linear_heads_give_the_mean_logit():
    """Heads of several topic splits, each with its own feature standardisation, fold into one
    linear map whose logit is the mean of theirs."""
    import torch

    from tigerdecode.model.load import Fingerprint
    from tigerdecode.training.train import average_linear

    fp = Fingerprint("LlamaForCausalLM", 8, 4, 100, "x")
    gen = torch.Generator().manual_seed(0)
    members = []
    for _ in range(3):
        h = ControlHeads(HeadConfig(layers=[1, 3], hidden_size=8), fp)
        h.feat_mean.copy_(torch.randn(16, generator=gen))
        h.feat_std.copy_(torch.rand(16, generator=gen) + 0.5)
        for o in ("stop", "dev"):
            h.nets[o].weight.data = torch.randn(1, 16, generator=gen)
            h.nets[o].bias.data = torch.randn(1, generator=gen)
        members.append(h)
    x = torch.randn(32, 16, generator=gen) * 3

    def logit(h, o):
        with torch.no_grad():
            return h.nets[o]((x - h.feat_mean) / h.feat_std).squeeze(-1)

    want = {o: torch.stack([logit(h, o) for h in members]).mean(0) for o in ("stop", "dev")}
    average_linear(members[0], members[1:])
    for o in ("stop", "dev"):
        assert torch.allclose(logit(members[0], o), want[o], atol=1e-4)
    mlp = ControlHeads(HeadConfig(layers=[1, 3], hidden_size=8, kind="mlp"), fp)
    with pytest.raises(ValueError, match="only linear heads"):
        average_linear(mlp, members[1:])
