"""How QA prompts are put to the model: one formatting rule shared by decoding, evaluation and
the heads' training data (the heads read states under exactly this prompt)."""

from __future__ import annotations

# How QA prompts are put to the model (always through the chat template when it has one).
# Completion-style prompts ("The capital of Japan is") get a short instruction; questions
# (ending in "?") are asked with a request for a brief answer.
COMPLETION_TEMPLATE = "Finish this sentence with a short, factual answer.\n\n{prompt} ..."
QUESTION_TEMPLATE = "{prompt}\nAnswer briefly."


def format_prompt(prompt: str) -> str:
    """The user message for a QA prompt (see the templates above)."""
    template = QUESTION_TEMPLATE if prompt.rstrip().endswith("?") else COMPLETION_TEMPLATE
    return template.format(prompt=prompt.strip())
