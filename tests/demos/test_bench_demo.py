"""`tigerdecode bench demo`: clients against the running demo get an answer or a clear "busy,
retry in ~N s", never a traceback; the report's figures come from what the clients saw.
Behaviour only: no assertion on a time."""

import json
import os
import re
import threading
import time

import pytest
from click.testing import CliRunner

from tigerdecode.bench.demo import (
    Outcome,
    Round,
    batching_summary,
    drive,
    rss_mb,
    soak_check,
    table,
)
from tigerdecode.cli import main


def test_one_at_a_time_and_all_at_once_give_each_client_the_same_text(demo_url):
    from tigerdecode.bench.demo import sequential

    one = sequential(demo_url, 4, max_new_tokens=5)
    many = drive(demo_url, clients=4, requests=1, max_new_tokens=5)
    b = batching_summary([(many, one)])
    assert b["same_text"] == 4 and b["batched"]["served"] == b["serial"]["served"] == 4


def test_every_client_is_served(demo_url):
    r = drive(demo_url, clients=3, requests=2, max_new_tokens=4, name="t")
    s = r.summary()
    assert (s["requests"], s["served"], s["rejected"], s["errors"], s["tracebacks"]) == \
        (6, 6, 0, 0, 0)
    assert s["tokens"] == 24  # the tiny model never stops early
    assert all(o.text for o in r.outcomes)


@pytest.fixture
def small_queue_url(demo_backend):
    """The app on a backend that decodes one request at a time and lets one wait."""
    from tigerdecode.demos.app import build_app, launch
    from tigerdecode.demos.backend import DemoBackend

    b = DemoBackend(demo_backend.model, demo_backend.tokenizer, heads=demo_backend.heads,
                    judge=None, limits=demo_backend.limits, max_batch=1, max_waiting=1)
    app = build_app(b)
    launch(app, block=False)
    yield app.local_url, b
    app.close()
    b.close()


def test_a_full_demo_answers_busy_with_when_to_retry(small_queue_url):
    url, backend = small_queue_url
    busy, first = [], []

    def seen(o):  # let the model go once the extra clients have been told to come back
        if o.kind == "busy":
            busy.append(o)
            if len(busy) == 2:
                backend._lock.release()

    backend._lock.acquire()  # the first request decodes (blocked here), one waits, two refused
    try:
        t = threading.Thread(target=lambda: first.append(drive(url, clients=1, requests=1,
                                                               max_new_tokens=3)))
        t.start()
        while backend.batcher.running != 1:
            time.sleep(0.01)
        r = drive(url, clients=3, requests=1, max_new_tokens=3, on_outcome=seen, timeout_s=120)
        t.join(120)
    finally:
        if backend._lock.locked() and len(busy) < 2:
            backend._lock.release()
    s, s1 = r.summary(), first[0].summary()
    assert (s1["served"], s["served"], s["rejected"], s["errors"], s["tracebacks"]) == \
        (1, 1, 2, 0, 0)
    for o in busy:
        assert re.fullmatch(r"\*\*Busy:\*\* The demo is busy \(1 requests are waiting\); retry "
                            r"in ~\d+ s\.", o.message)
    assert "busy answer: **Busy:**" in table({"load": [s]})


def test_batching_summary_counts_same_texts_and_ratio():
    def rnd(name, texts, wall):
        return Round(name, len(texts), [Outcome("served", 1.0, tokens=4, text=t) for t in texts],
                     wall)

    b = batching_summary([(rnd("batched", ["a", "b", "c"], 1.0), rnd("serial", ["a", "b", "x"], 3)),
                          (rnd("batched", ["a", "b", "c"], 1.0), rnd("serial", ["a", "y", "c"], 2))])
    assert b["same_text"] == 2 and b["speedups"] == pytest.approx([3.0, 2.0])
    assert b["speedup"] == pytest.approx(12 / 5)  # median 12 tok/s over median (4 + 6) / 2
    assert "2.40x the tokens/s" in table({"load": [], "batching": b})


def test_soak_memory_check():
    ok = soak_check([100, 120, 130, 131, 140], warmup=3)
    assert ok["ok"] and ok["rss_mb_after_warmup"] == 130 and ok["growth"] == pytest.approx(
        140 / 130 - 1)
    assert soak_check([100, 100, 100, 120], warmup=2)["ok"] is False
    assert soak_check([100], warmup=3)["ok"] is None
    assert rss_mb(os.getpid()) > 0


def test_bench_demo_command_on_a_tiny_model(tiny_model_dir):
    res = CliRunner().invoke(main, ["bench", "demo", "--model", str(tiny_model_dir),
                                    "--clients", "3", "--max-new-tokens", "3",
                                    "--batching-clients", "0", "--json", "--timeout-s", "120"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    (load,) = doc["load"]
    assert (load["clients"], load["served"], load["tracebacks"]) == (3, 3, 0)
    assert load["rss_mb_max"] > 0 and doc["batching"] is None and doc["soak"] is None


def test_bench_demo_refuses_bad_client_counts():
    res = CliRunner().invoke(main, ["bench", "demo", "--clients", "0,x"])
    assert res.exit_code == 2 and "--clients" in res.output and "Traceback" not in res.output
