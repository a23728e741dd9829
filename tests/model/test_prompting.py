import pytest

from tigerdecode.model.prompting import PromptError, build_prompt, context_window, encode_prompts


def test_chat_template_path(tokenizer):
    text = build_prompt(tokenizer, "What is the capital of Japan?")
    assert "<|im_start|>user\nWhat is the capital of Japan?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    with_system = build_prompt(tokenizer, "Hi", system="Be brief.")
    assert "<|im_start|>system\nBe brief.<|im_end|>" in with_system


def test_raw_path_is_plain_completion(tokenizer):
    assert build_prompt(tokenizer, "The capital of Japan is", raw=True) == "The capital of Japan is"
    enc = encode_prompts(tokenizer, ["The capital of Japan is"], raw=True)
    assert tokenizer.decode(enc["input_ids"][0]).endswith("The capital of Japan is")


def test_chat_template_not_double_bos(tokenizer):
    enc = encode_prompts(tokenizer, ["Hi"])
    ids = enc["input_ids"][0].tolist()
    assert ids == tokenizer(build_prompt(tokenizer, "Hi"), add_special_tokens=False)["input_ids"]


def test_batches_are_left_padded(tokenizer):
    enc = encode_prompts(tokenizer, ["Hi", "A much longer question about many things?"])
    mask = enc["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()
    assert tokenizer.padding_side == "right" or tokenizer.padding_side == "left"


@pytest.mark.parametrize("bad,msg", [("", "empty"), ("   ", "empty"), ("x" * 20_001, "at most")])
def test_bad_prompts(tokenizer, bad, msg):
    with pytest.raises(PromptError, match=msg):
        encode_prompts(tokenizer, [bad])


def test_prompt_longer_than_context_window(tokenizer, tiny_llama):
    model, _ = tiny_llama
    window = context_window(model)
    assert window == 512
    with pytest.raises(PromptError, match="context window allows 100"):
        encode_prompts(tokenizer, ["word " * 300], max_length=100)


def test_base_model_without_chat_template_gets_the_dialogue_format(tokenizer):
    import copy

    from tigerdecode.model.prompting import BASE_TEMPLATE

    base = copy.deepcopy(tokenizer)
    base.chat_template = None
    assert build_prompt(base, "Write a haiku.") == "User: Write a haiku.\nAssistant:"
    assert build_prompt(base, "Hi", system="Be brief.") == \
        "Be brief.\n\n" + BASE_TEMPLATE.format(prompt="Hi")
    assert build_prompt(base, "The sky is", raw=True) == "The sky is"  # raw stays raw
    enc = encode_prompts(base, ["Write a haiku."])
    assert base.decode(enc["input_ids"][0], skip_special_tokens=True) == \
        "User: Write a haiku.\nAssistant:"
