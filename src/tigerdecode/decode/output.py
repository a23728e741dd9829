"""From the loop's tensors to :class:`~tigerdecode.result.GenerationResult` objects."""

from __future__ import annotations

from tigerdecode.decode.loop import DecodeOutput
from tigerdecode.decode.sampling import eos_ids_of
from tigerdecode.result import GenerationResult, TokenTrace


def pad_id_of(tokenizer, model) -> int:
    """The pad id to lay out finished rows with: the tokenizer's, the model's, or EOS."""
    for v in (getattr(tokenizer, "pad_token_id", None), model.generation_config.pad_token_id,
              getattr(tokenizer, "eos_token_id", None)):
        if v is not None:
            return int(v if isinstance(v, int) else eos_ids_of(v)[0])
    return 0


def to_results(out: DecodeOutput, tokenizer, prompts, creativity, method, control,
               notes) -> list[GenerationResult]:
    """One result per row: text (the abstention message when the row abstained), ids without
    EOS, the per-token trace, timings and why it stopped."""
    policy = control.policy
    eos = set(eos_ids_of(tokenizer.eos_token_id)) if tokenizer is not None else set()
    tr = out.trace

    def at(key, i, j):
        return tr[key][i][j] if tr[key][i] is not None else None

    results = []
    for i, row in enumerate(out.tokens.tolist()):
        ids = row[: out.lengths[i]]
        trace = [TokenTrace(
            token=tokenizer.decode([t]) if tokenizer is not None else str(t), token_id=t,
            p_stop=at("p_stop", i, j), p_dev=at("p_dev", i, j), p_slot=at("p_slot", i, j),
            p_risk=at("p_risk", i, j), p_name=at("p_name", i, j), p_spell=at("p_spell", i, j),
            logprob=at("logprob", i, j),
            top_logprob=at("top_logprob", i, j),
            temperature=tr["temperature"][i][j], top_p=tr["top_p"][i][j],
            member_weights=tr["weights"][i][j], retries=int(tr["retries"][i][j]),
            rewritten=tr["retries"][i][j] > 0) for j, t in enumerate(ids)]
        body = [t for t in ids if t not in eos]
        abstained = out.stop_reasons[i] == "abstain"
        text = tokenizer.decode(body, skip_special_tokens=True).strip() if tokenizer else ""
        results.append(GenerationResult(
            text=policy.abstain_message if abstained else text, token_ids=body, trace=trace,
            timings=dict(out.timings), prompt=prompts[i] if prompts else None,
            creativity=creativity, abstained=abstained, stop_reason=out.stop_reasons[i],
            method=method, notes=list(notes),
            p_factual=None if out.p_factual is None else out.p_factual[i]))
    return results
