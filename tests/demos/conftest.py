"""A running demo app on a tiny random Llama with random (untrained) control heads and judge:
fast, and every panel has real numbers to show."""

import json

import pytest

# Hand-made evaluation rows (the trade-off tab's input); not measurements.
RESULT_ROWS = [
    {"method": "temperature", "setting": 0.7, "error_rate": 0.5, "abstain_rate": 0.0,
     "precision": 0.5, "distinct_2": 0.6, "self_bleu": 0.3, "tokens_per_s": 12.0},
    {"method": "tigerdecode", "setting": 0.2, "error_rate": 0.3, "abstain_rate": 0.1,
     "precision": 0.7, "distinct_2": 0.5, "self_bleu": 0.3, "tokens_per_s": 11.0},
    {"method": "tigerdecode", "setting": 0.8, "error_rate": 0.4, "abstain_rate": 0.0,
     "precision": 0.6, "distinct_2": 0.7, "self_bleu": 0.2, "tokens_per_s": 11.0},
]


@pytest.fixture(scope="session")
def results_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("eval") / "results.json"
    p.write_text(json.dumps({"rows": RESULT_ROWS}))
    return p


@pytest.fixture(scope="session")
def demo_backend(tiny_llama):
    from tigerdecode.demos.backend import DemoBackend, Limits
    from tiny_models import random_heads_and_judge

    model, tok = tiny_llama
    heads, judge = random_heads_and_judge(model, tok)
    return DemoBackend(model, tok, model_name="tiny-llama", heads=heads, judge=judge,
                       limits=Limits(max_prompt_chars=500, max_new_tokens=32))


@pytest.fixture(scope="session")
def demo_url(demo_backend, results_file):
    """The app served on 127.0.0.1 (a free port), closed after the session."""
    pytest.importorskip("gradio")
    from tigerdecode.demos.app import build_app, launch

    app = build_app(demo_backend, results_path=results_file)
    launch(app, host="127.0.0.1", port=None, block=False)
    yield app.local_url
    app.close()


@pytest.fixture(scope="session")
def client(demo_url):
    from gradio_client import Client

    return Client(demo_url, verbose=False)
