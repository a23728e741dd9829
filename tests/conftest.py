import os

# Triton kernels must see the interpreter flag before any @triton.jit decorator runs.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import ARCHS, build_tiny_model, load_tokenizer, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="session", params=ARCHS)
def tiny_model(request, tokenizer):
    """(arch, model, tokenizer) for every fixture architecture."""
    return request.param, build_tiny_model(request.param, tokenizer), tokenizer


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    return build_tiny_model("llama", tokenizer), tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny Llama saved as a HF directory (safetensors), for loading-by-path tests."""
    return save_tiny_model("llama", tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def default_model():
    """The real embedded SmolLM2-135M-Instruct (converted once into the cache)."""
    from tigerdecode.model.load import load_model

    return load_model("default")


def pytest_collection_modifyitems(config, items):
    """Every test on the real default model is `slow` (`make test` runs them all;
    `make test-fast` leaves them out)."""
    for item in items:
        if "default_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
