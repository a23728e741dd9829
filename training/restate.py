"""``tigerdecode data add-layers``: give a finished data directory the states of more layers.

A data build stores the states of the layers it was asked for. Heads that read another layer
(the final normed state, ``n + 1``, which engine-packed heads need) would otherwise need the whole
build again: sampling is what costs, and the answers are already there. This re-reads every
stored answer teacher-forced, exactly as it was decoded (the prompt as it was asked, left-padded,
then the answer's kept tokens), and writes each new layer next to its shard as
``shard-NNNNN.layer<L>.safetensors`` (``layer_<L>`` per token, ``prompt_layer_<L>`` per answer,
fp16). One file per shard and layer, written by rename, so an interrupted run resumes.

The same forward recomputes one layer the build stored and compares it with the stored states:
a mismatch (another model, another prompt format) stops the run before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file
from tqdm import tqdm

from tigerdecode.fsutil import atomic_file
from tigerdecode.model.load import fingerprint
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.model.taps import HiddenStateTap
from tigerdecode.training.store import DataStoreError, FeatureStore

# allowed mean |recomputed - stored| relative to the stored states' mean magnitude: fp16 storage
# and another batch padding differ by little (default model, layer 24: 1.8e-4, max abs 0.12 on
# states up to 336), a prompt asked another way by much more (5.8e-2, max abs 13.7)
CHECK_TOLERANCE = 1e-2


def side_file(root: Path, shard: str, layer: int) -> Path:
    return root / f"{shard}.layer{layer}.safetensors"


@torch.inference_mode()
def _states(model, tokenizer, messages: list[str], answers: list[list[int]],
            layers: list[int]) -> tuple[dict[int, list[torch.Tensor]], dict[int, torch.Tensor]]:
    """Per answer, each layer's states at its kept tokens ``(n, H)`` and at the prompt's last
    position ``(H,)``."""
    dev = next(model.parameters()).device
    enc = encode_prompts(tokenizer, messages)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    T, S = ids.shape[1], max((len(a) for a in answers), default=0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    full = torch.full((len(answers), T + S), pad, dtype=torch.long)
    full_mask = torch.zeros_like(full)
    full[:, :T], full_mask[:, :T] = ids, mask
    for b, a in enumerate(answers):
        full[b, T:T + len(a)] = torch.tensor(a, dtype=torch.long)
        full_mask[b, T:T + len(a)] = 1
    pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with HiddenStateTap(model, layers) as tap:
        model(input_ids=full.to(dev), attention_mask=full_mask.to(dev), position_ids=pos.to(dev),
              use_cache=False, logits_to_keep=1)
        states = {x: tap.states[x].float().cpu() for x in layers}
    tokens = {x: [s[b, T:T + len(a)] for b, a in enumerate(answers)] for x, s in states.items()}
    prompt = {x: s[:, T - 1] for x, s in states.items()}
    return tokens, prompt


def add_layers(model, tokenizer, data_dir: str | Path, layers: list[int], *,
               batch_size: int = 32, progress: bool = True, log=print) -> list[int]:
    """Write the states of ``layers`` for every shard of ``data_dir`` that lacks them; returns
    the layers the directory now has beyond its build's."""
    store = FeatureStore(data_dir)
    manifest = store.manifest()
    config = manifest["config"]
    if config["fingerprint"] != fingerprint(model, tokenizer).to_dict():
        raise DataStoreError(f"{data_dir} was built with another model "
                             f"({config['fingerprint'].get('architecture')}); load that model")
    stored = config["layers"]
    new = sorted(set(int(x) for x in layers) - set(stored))
    if not new:
        log(f"{data_dir} already stores layers {sorted(set(layers))}")
        return store.extra_layers()
    check = max(stored)
    units = manifest["units"]
    todo = [u for u in units if not all(side_file(store.root, u["shard"], x).exists()
                                        for x in new)]
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="add layers",
               unit="shard", disable=not progress)
    for unit in todo:
        shard = unit["shard"]
        t = load_file(str(store.root / f"{shard}.safetensors"))
        rows = store.answers_of(shard)
        kept = [t["token_id"][t["answer"] == a].tolist() for a in range(len(rows))]
        if any(len(k) != r["n_kept"] for k, r in zip(kept, rows, strict=True)):
            raise DataStoreError(f"{data_dir}: shard {shard}'s tokens do not match its answers; "
                                 "rebuild the data")
        out_tok = {x: [] for x in new + [check]}
        out_prompt = {x: [] for x in new + [check]}
        for i in range(0, len(rows), batch_size):
            part = rows[i:i + batch_size]
            tok, prompt = _states(model, tokenizer, [r["message"] for r in part],
                                  kept[i:i + batch_size], new + [check])
            for x in out_tok:
                out_tok[x].extend(tok[x])
                out_prompt[x].append(prompt[x])
        got = torch.cat(out_tok[check]).numpy()
        ref = t[f"layer_{check}"].astype(np.float32)
        err = float(np.abs(got - ref).mean() / max(np.abs(ref).mean(), 1e-12)) if len(ref) \
            else 0.0
        if err > CHECK_TOLERANCE:
            raise DataStoreError(
                f"{data_dir}: recomputed layer {check} states differ from the stored ones by "
                f"{err:.2%} on average in shard {shard} (allowed {CHECK_TOLERANCE:.0%}); the "
                "model or the prompt format is not the one the data was built with. Rebuild "
                "the data with the layers you need instead.")
        for x in new:
            with atomic_file(side_file(store.root, shard, x)) as tmp:
                save_file({f"layer_{x}": torch.cat(out_tok[x]).to(torch.float16).contiguous(),
                           f"prompt_layer_{x}": torch.cat(out_prompt[x]).to(torch.float16)},
                          str(tmp), metadata={"check_layer": str(check),
                                              "check_rel_err": f"{err:.3g}"})
        bar.update(1)
        bar.set_postfix(check_err=f"{err:.3g}")
    bar.close()
    return store.extra_layers()
