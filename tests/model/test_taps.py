import pytest
import torch

from tigerdecode.model.taps import HiddenStateTap, decoder_blocks, num_layers


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


@pytest.mark.parametrize("layers", [[], [0], [5], [-1]])
def test_bad_layers(tiny_llama, layers):
    model, _ = tiny_llama
    with pytest.raises(ValueError, match=r"in \[1, 4\]"):
        HiddenStateTap(model, layers)
