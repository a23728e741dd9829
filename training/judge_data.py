"""Judge training answers sampled by the controlled decoder itself, at the creativity the judge
will be used at, with the features read from the decode's own KV cache (no second prompt pass).

Resumable: every finished batch is appended to ``DIR/judge_features.npz`` (written to a temp
file, then renamed), and a rerun skips the items already there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


def sample_judge_data(model, tokenizer, items, out_dir, *, creativity=0.5, max_new_tokens=16,
                      batch_size=32, seed=0, layers=(12, 16, 20, 24)):
    """Answer ``items`` (QAItems) with ``ControlledGenerator`` (heads off) and store features,
    labels (1 = wrong, by ``label_answer``), topics and texts."""
    from tigerdecode.decode.loop import decode
    from tigerdecode.decode.sampling import eos_ids_of
    from tigerdecode.judge.features import from_decode, reencode
    from tigerdecode.model.prompting import encode_prompts
    from tigerdecode.policy.control import PolicyControl
    from tigerdecode.policy.knob import Policy
    from tigerdecode.qa.labels import label_answer
    from tigerdecode.qa.prompts import format_prompt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "judge_features.npz"
    have = dict(np.load(path, allow_pickle=False)) if path.exists() else {}
    done = set(have.get("ids", np.array([], dtype=str)).tolist())
    todo = [it for it in items if it.id not in done]
    eos = eos_ids_of(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    for s in tqdm(range(0, len(todo), batch_size), desc="judge data", unit="batch"):
        chunk = todo[s:s + batch_size]
        enc = encode_prompts(tokenizer, [format_prompt(it.prompt) for it in chunk])
        members = [(model, enc["input_ids"], enc["attention_mask"])]
        control = PolicyControl(Policy(creativity), 1)
        out = decode(members, control, max_new_tokens=max_new_tokens, eos_ids=eos, pad_id=pad,
                     tokenizer=tokenizer, seed=seed + s, keep_cache=True)
        rows = out.tokens.tolist()
        answers = [[t for t in r[:n] if t not in eos] for r, n in zip(rows, out.lengths,
                                                                        strict=True)]
        ended = [x == "eos" for x in out.stop_reasons]
        r = reencode(model, from_decode(out.kept, out.kept_rows), answers, ended,
                     eos_id=eos[0], pad_id=pad, layers=list(layers))
        texts = [tokenizer.decode(a, skip_special_tokens=True).strip() for a in answers]
        y = [0 if label_answer(it.prompt, it.answers, [t], True).correct else 1
             for it, t in zip(chunk, texts, strict=True)]
        x = torch.cat([r.states, r.scalars], dim=-1).numpy()
        new = {"x": x, "y": np.array(y), "ids": np.array([it.id for it in chunk]),
               "topics": np.array([it.topic or "unknown" for it in chunk]),
               "texts": np.array(texts)}
        have = new if not have else {k: np.concatenate([have[k], v]) for k, v in new.items()}
        tmp = out_dir / ".judge_features.tmp.npz"
        np.savez(tmp, **have)
        os.replace(tmp, path)
        (out_dir / "judge_data.json").write_text(json.dumps(
            {"creativity": creativity, "max_new_tokens": max_new_tokens, "layers": list(layers),
             "scalar_names": r.scalar_names, "n": int(len(have["y"]))}, indent=1))
    return path
