"""``tigerdecode data build``: sample, label and store the special data for a QA file."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm import tqdm

from tigerdecode.qa.data import QAItem
from tigerdecode.qa.forms import form_of
from tigerdecode.qa.labels import OPEN_TEXT, label_answer, label_mixed, token_pieces
from tigerdecode.qa.prompts import COMPLETION_TEMPLATE, QUESTION_TEMPLATE, format_prompt
from tigerdecode.training.sampling import DEFAULT_SETTINGS, Setting, sample_answers
from tigerdecode.training.store import FeatureStore

DEFAULT_LAYERS = (12, 16, 20, 24)


def label_and_pack(tokenizer, items: list[QAItem], results: list[dict], setting: Setting,
                   layers: list[int], messages: list[str] | None = None
                   ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Label sampled answers and pack their kept tokens into one shard's tensors
    (``messages``: what each item was asked as, recorded with its answer)."""
    messages = messages or [user_message(it) for it in items]
    cols: dict[str, list] = {k: [] for k in ("answer", "pos", "token_id", "dev", "stop", "slot")}
    feats = {k: [] for k in ("maxprob", "entropy", "logprob", "next_eos_prob")}
    states = {x: [] for x in layers}
    prompt_states = {x: [] for x in layers}
    answers = []
    for item, res, message in zip(items, results, messages, strict=True):
        ids = res["token_ids"]
        pieces = token_pieces(tokenizer, ids)
        n = res["n_keep"]
        form = "open" if is_open(item) else form_of(item)
        if form == "open":  # free text: no fact to depart from, no answer to complete
            lab = SimpleNamespace(dev=[OPEN_TEXT] * len(ids), stop=[-1] * len(ids), correct=None,
                                  span_start=0, slot=[0] * len(ids))
        elif form == "mixed":  # creative text that must name the fact
            lab = label_mixed(item.answers, pieces)
        else:
            lab = label_answer(item.prompt, item.answers, pieces, res["ended_by_eos"])
        a = len(answers)
        answers.append({"id": item.id, "topic": item.topic or "unknown", "setting": setting.name,
                        "prompt": item.prompt, "text": "".join(pieces), "correct": lab.correct,
                        "message": message,
                        "open": is_open(item), "form": form, "n_tokens": len(ids), "n_kept": n,
                        "span_start": lab.span_start,
                        # does the first token decide the fact (read from the prompt state)?
                        "slot0": int(lab.slot[0]) if len(lab.slot) else 0,
                        "first_maxprob": res["first_maxprob"],
                        "first_entropy": res["first_entropy"]})
        cols["answer"] += [a] * n
        cols["pos"] += list(range(n))
        cols["token_id"] += ids[:n]
        cols["dev"] += lab.dev[:n]
        cols["stop"] += lab.stop[:n]
        # slot is forward-looking: the state of token k (what the heads read before token k+1
        # is drawn) learns whether token k+1 decides the answer; -1 past the last known token
        cols["slot"] += (list(lab.slot[1:n + 1]) + [-1] * n)[:n]
        for k in feats:
            feats[k].append(res[k].float())
        for x in layers:
            states[x].append(res["states"][x])
            prompt_states[x].append(res["prompt_states"][x])
    out = {"answer": torch.tensor(cols["answer"], dtype=torch.int32),
           "pos": torch.tensor(cols["pos"], dtype=torch.int32),
           "token_id": torch.tensor(cols["token_id"], dtype=torch.int32),
           "dev": torch.tensor(cols["dev"], dtype=torch.int8),
           "stop": torch.tensor(cols["stop"], dtype=torch.int8),
           "slot": torch.tensor(cols["slot"], dtype=torch.int8)}
    out.update({k: torch.cat(v) for k, v in feats.items()})
    out.update({f"layer_{x}": torch.cat(v).to(torch.float16) for x, v in states.items()})
    out.update({f"prompt_layer_{x}": torch.stack(v).to(torch.float16)
                for x, v in prompt_states.items()})  # (n_answers, H)
    return out, answers


def is_open(item: QAItem) -> bool:
    """An open prompt (creative writing, no gold answers; ``tigerdecode.qa.data.load_prompts``)."""
    return not item.answers


def user_message(item: QAItem, bare: bool = False) -> str:
    """What the model is asked: the QA template for a fact, the prompt itself when open or mixed
    (a creative request that names its fact is asked as written). ``bare``: a question asked as
    it is, without the template's "Answer briefly." (as users type it)."""
    if is_open(item) or form_of(item) == "mixed" or (bare and form_of(item) == "question"):
        return item.prompt
    return format_prompt(item.prompt)


def asks_bare(item: QAItem) -> bool:
    """Half the questions (a fixed hash of the id) are asked bare, so the heads learn both what
    the evaluation asks (the template) and what users type."""
    return form_of(item) == "question" and \
        int(hashlib.sha256((item.id or item.prompt).encode()).hexdigest(), 16) % 2 == 1


def qa_hash(items: list[QAItem]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(repr((it.id, it.prompt, it.answers, it.topic)).encode())
    return h.hexdigest()[:16]


def build_data(model, tokenizer, items: list[QAItem], out: str | Path, *,
               layers=DEFAULT_LAYERS, settings: tuple[Setting, ...] = DEFAULT_SETTINGS,
               max_new_tokens: int = 24, batch_size: int = 32, seed: int = 0,
               progress: bool = True, max_seconds: float | None = None,
               bare_questions: bool = False, on_unit=None) -> FeatureStore:
    """Sample every item under every setting, label, and stream shards to ``out``.

    Items are shuffled with ``seed`` (so a partial build covers many topics) and cut into
    batches; a unit is one batch under one setting. Rerunning with the same options resumes.
    ``max_seconds`` stops cleanly after the unit that crosses it (a time budget); the finished
    units are usable as they are. ``bare_questions``: half the questions are asked without the
    template (:func:`asks_bare`). ``on_unit(done, total)`` is called after each finished unit
    (``tigerdecode fit`` drives its overall progress with it).
    """
    import time

    t0 = time.perf_counter()
    from tigerdecode.model.load import fingerprint

    if batch_size < 1 or max_new_tokens < 2:
        raise ValueError(f"batch_size must be >= 1 and max_new_tokens >= 2; got {batch_size}, "
                         f"{max_new_tokens}")
    layers = sorted(set(int(x) for x in layers))
    items = list(items)
    random.Random(seed).shuffle(items)
    store = FeatureStore(out)
    config = {"fingerprint": fingerprint(model, tokenizer).to_dict(), "layers": layers,
              "settings": [s.__dict__ for s in settings], "max_new_tokens": max_new_tokens,
              "batch_size": batch_size, "seed": seed, "qa_hash": qa_hash(items),
              "n_items": len(items), "templates": [COMPLETION_TEMPLATE, QUESTION_TEMPLATE]}
    bare = bare_questions
    if bare:  # older builds lack the key, so they still resume
        config["bare_questions"] = True
    done = store.open(config)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    units = [(b, s) for b in range(len(batches)) for s in settings]
    todo = [(b, s) for b, s in units if f"b{b:05d}-{s.name}" not in done]
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="data build",
               unit="unit", disable=not progress)
    for i, (b, setting) in enumerate(todo):
        batch = batches[b]
        messages = [user_message(it, bare and asks_bare(it)) for it in batch]
        results = sample_answers(model, tokenizer, messages, layers, setting, max_new_tokens,
                                 seed=seed * 100_003 + b)
        tokens, answers = label_and_pack(tokenizer, batch, results, setting, layers, messages)
        store.add_unit(f"b{b:05d}-{setting.name}", tokens, answers)
        bar.update(1)
        if on_unit is not None:
            on_unit(len(units) - len(todo) + i + 1, len(units))
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    bar.close()
    return store
