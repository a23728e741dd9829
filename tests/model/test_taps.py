import pytest
import torch

from tigerdecode.model.taps import (
    HiddenStateTap,
    decoder_blocks,
    final_layer,
    final_norm,
    num_layers,
)


def test_tap_matches_output_hidden_states(tiny_model):
    arch, model, tok = tiny_model
    ids = tok(["The capital of Japan is"], return_tensors="pt")
    n = num_layers(model)
    with torch.no_grad(), HiddenStateTap(model, list(range(1, n + 1))) as tap:
        out = model(**ids, output_hidden_states=True)
        for layer in range(1, n):
            torch.testing.assert_close(tap.states[layer], out.hidden_states[layer])
        last = tap.last()
        assert set(last) == set(range(1, n + 1))
        assert last[1].shape == (1, model.config.get_text_config().hidden_size)
        ours = {h.id for h in tap._handles}
        assert len(ours) == n
    assert tap.states == {}  # detached and cleared on exit
    assert not any(ours & set(b._forward_hooks) for b in decoder_blocks(model))


def test_final_layer_is_the_state_lm_head_reads(tiny_model):
    """Layer n + 1 is the final normed state: HF's last hidden state, and lm_head of it gives
    the logits, so a linear head on it is one more row of lm_head."""
    arch, model, tok = tiny_model
    ids = tok(["The capital of Japan is"], return_tensors="pt")
    top = final_layer(model)
    assert top == num_layers(model) + 1
    with torch.no_grad(), HiddenStateTap(model, [1, top]) as tap:
        out = model(**ids, output_hidden_states=True)
        torch.testing.assert_close(tap.states[top], out.hidden_states[-1])
        torch.testing.assert_close(model.get_output_embeddings()(tap.states[top]), out.logits)
        ours = {h.id for h in tap._handles}
        assert ours & set(final_norm(model)._forward_hooks), arch
    assert not ours & set(final_norm(model)._forward_hooks)  # detached on exit


@pytest.mark.parametrize("layers", [[], [0], [6], [-1]])
def test_bad_layers(tiny_llama, layers):
    model, _ = tiny_llama
    with pytest.raises(ValueError, match=r"in \[1, 5\]"):
        HiddenStateTap(model, layers)
