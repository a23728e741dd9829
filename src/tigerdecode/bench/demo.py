"""``tigerdecode bench demo``: the demo under load, driven the way browsers drive it.

The demo runs as its own process (``tigerdecode demo`` on 127.0.0.1 and a free port), so its
memory is measured alone and the clients do not share its interpreter. N ``gradio_client``
clients each send their requests to ``/generate``; every answer is sorted into served, busy
("retry in ~N s"), error, or a traceback (which must never reach a client). Rounds:

- **load**: for each client count (24 and 64 by default) every client sends ``--requests``;
- **batching**: 16 clients at once against the same 16 requests sent one after another (so
  the demo decodes them one at a time), alternating three times on the same demo process;
  median tokens/s side by side, and whether each client got the same text both ways (same seed,
  so it should);
- **soak** (``--soak-minutes``): clients keep sending for that long; resident memory is sampled
  and, after a warm-up, must stay within +10% of its value at the end of the warm-up.

Everything is bounded: client counts, requests, seconds per request (``--timeout-s``), the soak's
length, and the server's own queue.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field

PROMPTS = ["What is the capital of Japan?", "Who wrote the play Romeo and Juliet?",
           "Write one sentence about a lighthouse keeper who finds a strange map.",
           "Name three rivers in Europe.", "Tell me a short story about a fox.",
           "What is the boiling point of water?", "Describe the sea at night.",
           "Who painted the Mona Lisa?"]
BUSY = re.compile(r"retry in ~(\d+) s")
RSS_GROWTH_LIMIT = 0.10  # soak: resident memory after warm-up within +10%


class BenchError(RuntimeError):
    """The demo could not be started or reached; the message says why."""


@dataclass
class Outcome:
    kind: str  # "served" | "busy" | "error"
    latency_s: float
    tokens: int = 0
    text: str = ""
    message: str = ""
    traceback: bool = False


@dataclass
class Round:
    """One load round: what every request got, and the server's memory around it."""

    name: str
    clients: int
    outcomes: list[Outcome]
    wall_s: float
    rss_mb: list[float] = field(default_factory=list)  # sampled during the round

    def summary(self) -> dict:
        served = [o for o in self.outcomes if o.kind == "served"]
        lat = sorted(o.latency_s for o in served)
        tokens = sum(o.tokens for o in served)
        busy = [o for o in self.outcomes if o.kind == "busy"]
        return {
            "round": self.name, "clients": self.clients, "requests": len(self.outcomes),
            "served": len(served), "rejected": len(busy),
            "errors": sum(o.kind == "error" for o in self.outcomes),
            "tracebacks": sum(o.traceback for o in self.outcomes),
            "p50_s": _pct(lat, 50), "p95_s": _pct(lat, 95), "max_s": lat[-1] if lat else None,
            "tokens": tokens, "tokens_per_s": tokens / self.wall_s if self.wall_s else 0.0,
            "wall_s": self.wall_s,
            "rss_mb_max": max(self.rss_mb) if self.rss_mb else None,
            "first_error": next((o.message for o in self.outcomes if o.kind == "error"), None),
            "busy_message": busy[0].message if busy else None,
        }


def _pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    return statistics.quantiles(sorted_vals, n=100, method="inclusive")[q - 1]


# ---- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (Linux /proc), None where unreadable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def serve(model: str, *, max_batch: int, max_waiting: int, threads: int = 1,
          start_timeout_s: float = 600.0, log=None):
    """``tigerdecode demo`` in a child process on 127.0.0.1 and a free port; yields
    ``(url, pid)`` once it answers, and stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "tigerdecode", "demo", "--model", model, "--port", str(port),
           "--max-batch", str(max_batch), "--max-waiting", str(max_waiting)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        end = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the demo exited with status {proc.returncode} before it "
                                 f"answered ({' '.join(cmd)}); run that command to see why")
            try:
                with urllib.request.urlopen(url + "config", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise BenchError(f"the demo did not answer on {url} within {start_timeout_s:.0f}"
                                 " s; raise --start-timeout-s for a slow model load")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the clients -----------------------------------------------------------------------------


def _request(client, prompt: str, *, creativity: float, max_new_tokens: int, seed: int,
             timeout_s: float) -> Outcome:
    t0 = time.perf_counter()
    try:
        job = client.submit(prompt, creativity, max_new_tokens, seed, api_name="/generate")
        out = job.result(timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - the client's view of a failure is the measurement
        msg = f"{type(e).__name__}: {e}"
        return Outcome("error", time.perf_counter() - t0, message=msg[:500],
                       traceback="Traceback" in msg)
    dt = time.perf_counter() - t0
    texts = [x for x in out if isinstance(x, str)]
    tb = any("Traceback" in x for x in texts) or "Traceback" in repr(out[-1])
    status = out[0] if out and isinstance(out[0], str) else ""
    if status.startswith("**Done"):
        result = out[-1] if isinstance(out[-1], dict) else {}
        return Outcome("served", dt, tokens=len(result.get("token_ids", [])),
                       text=result.get("text", ""), traceback=tb)
    kind = "busy" if status.startswith("**Busy") and BUSY.search(status) else "error"
    return Outcome(kind, dt, message=status[:500], traceback=tb)


def drive(url: str, *, clients: int, requests: int | None = None, seconds: float | None = None,
          creativity: float = 0.5, max_new_tokens: int = 16, timeout_s: float = 600.0,
          server_pid: int | None = None, name: str = "load", seed_base: int = 0,
          on_outcome=None) -> Round:
    """``clients`` threads, each with its own ``gradio_client.Client``: ``requests`` each, or
    as many as fit in ``seconds``. Client ``i``'s ``k``-th request asks ``PROMPTS[(i + k) % 8]``
    with seed ``seed_base + i``, so a rerun asks the same. A busy answer is counted and the
    client waits the advised time (at most 5 s) before its next request."""
    from gradio_client import Client

    if requests is None and seconds is None:
        raise ValueError("give requests= or seconds=")
    outcomes: list[list[Outcome]] = [[] for _ in range(clients)]
    stop = threading.Event()
    samples: list[float] = []
    ready = threading.Barrier(clients + 1)  # every client connected
    go = threading.Event()  # then all start at once
    t_end = [0.0]

    def client(i):
        try:
            c = Client(url, verbose=False)
        except Exception as e:  # noqa: BLE001 - counted as this client's failure
            outcomes[i].append(Outcome("error", 0.0, message=f"{type(e).__name__}: {e}"[:500]))
            c = None
        ready.wait()
        go.wait()
        if c is None:
            return
        k = 0
        while not stop.is_set() and (requests is None or k < requests):
            if seconds is not None and time.perf_counter() >= t_end[0]:
                break
            o = _request(c, PROMPTS[(i + k) % len(PROMPTS)], creativity=creativity,
                         max_new_tokens=max_new_tokens, seed=seed_base + i, timeout_s=timeout_s)
            outcomes[i].append(o)
            if on_outcome is not None:
                on_outcome(o)
            k += 1
            if o.kind == "busy" and (requests is None or k < requests):
                stop.wait(min(5.0, float(BUSY.search(o.message).group(1))))

    def sampler():
        while not stop.is_set():
            if server_pid is not None and (m := rss_mb(server_pid)) is not None:
                samples.append(m)
            stop.wait(1.0)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    t_end[0] = t0 + (seconds or 0)
    go.set()
    mem = threading.Thread(target=sampler, daemon=True)
    mem.start()
    limit = (seconds or 0) + timeout_s * (requests or 1) + 60
    for t in threads:
        t.join(max(0.0, t0 + limit - time.perf_counter()))
    wall = time.perf_counter() - t0
    stop.set()
    mem.join(5)
    if any(t.is_alive() for t in threads):
        raise BenchError(f"clients still waiting after {limit:.0f} s; the demo is stuck")
    return Round(name, clients, [o for per in outcomes for o in per], wall, samples)


def sequential(url: str, n: int, *, creativity: float = 0.5, max_new_tokens: int = 48,
               timeout_s: float = 600.0, name: str = "one-at-a-time") -> Round:
    """The requests of ``n`` clients (client ``i``: ``PROMPTS[i % 8]``, seed ``i``, as in
    :func:`drive`) sent one after another by one client: the demo decodes one request at a
    time, the throughput a demo without batching gets however many clients wait."""
    from gradio_client import Client

    c = Client(url, verbose=False)
    t0 = time.perf_counter()
    outs = [_request(c, PROMPTS[i % len(PROMPTS)], creativity=creativity,
                     max_new_tokens=max_new_tokens, seed=i, timeout_s=timeout_s)
            for i in range(n)]
    return Round(name, 1, outs, time.perf_counter() - t0)


# ---- the rounds ------------------------------------------------------------------------------


def soak_check(samples: list[float], warmup: int) -> dict:
    """Memory over a soak: the RSS at the end of the warm-up (``warmup`` samples, one a second)
    and the largest after it; ``ok`` when the growth stays within ``RSS_GROWTH_LIMIT``."""
    if len(samples) <= warmup:
        return {"ok": None, "note": f"only {len(samples)} memory samples (warm-up {warmup})"}
    base, peak = samples[warmup - 1], max(samples[warmup:])
    growth = peak / base - 1
    return {"ok": growth <= RSS_GROWTH_LIMIT, "rss_mb_after_warmup": base,
            "rss_mb_peak_after": peak, "rss_mb_end": samples[-1], "growth": growth,
            "limit": RSS_GROWTH_LIMIT, "samples": len(samples)}


@dataclass
class BenchConfig:
    model: str = "default"
    clients: tuple[int, ...] = (24, 64)
    requests: int = 1
    max_new_tokens: int = 48
    creativity: float = 0.5
    max_batch: int = 16
    max_waiting: int = 64
    batching_clients: int = 16  # 0: skip the batched-vs-one-at-a-time round
    batching_repeats: int = 3
    soak_minutes: float = 0.0
    soak_clients: int = 8
    warmup_minutes: float = 1.0
    threads: int = 1
    timeout_s: float = 600.0
    start_timeout_s: float = 600.0


def run(cfg: BenchConfig, progress=print) -> dict:
    """Every round of ``cfg`` against one freshly started demo. Returns the summaries."""
    out: dict = {"config": asdict(cfg), "load": [], "batching": None, "soak": None}
    with serve(cfg.model, max_batch=cfg.max_batch, max_waiting=cfg.max_waiting,
               threads=cfg.threads, start_timeout_s=cfg.start_timeout_s) as (url, pid):
        out["rss_mb_idle"] = rss_mb(pid)
        progress(f"demo up at {url} (pid {pid}, {out['rss_mb_idle'] or 0:.0f} MB); warming up")
        drive(url, clients=1, requests=1, max_new_tokens=cfg.max_new_tokens,
              creativity=cfg.creativity, timeout_s=cfg.timeout_s)
        for n in cfg.clients:
            progress(f"load: {n} clients x {cfg.requests} request(s)")
            r = drive(url, clients=n, requests=cfg.requests, max_new_tokens=cfg.max_new_tokens,
                      creativity=cfg.creativity, timeout_s=cfg.timeout_s, server_pid=pid,
                      name=f"load-{n}")
            out["load"].append(r.summary())
        if cfg.batching_clients:
            out["batching"] = batching_round(url, pid, cfg, progress)
        if cfg.soak_minutes:
            secs = cfg.soak_minutes * 60
            progress(f"soak: {cfg.soak_clients} clients for {cfg.soak_minutes:g} min")
            r = drive(url, clients=cfg.soak_clients, seconds=secs,
                      max_new_tokens=cfg.max_new_tokens, creativity=cfg.creativity,
                      timeout_s=cfg.timeout_s, server_pid=pid, name="soak")
            warm = max(1, min(int(cfg.warmup_minutes * 60), int(secs) // 2))
            out["soak"] = {**r.summary(), "memory": soak_check(r.rss_mb, warm)}
    return out


def batching_round(url: str, pid: int, cfg: BenchConfig, progress=print) -> dict:
    """``cfg.batching_clients`` concurrent clients (one request each) against the same
    requests sent one at a time, on the same demo process, alternating ``cfg.batching_repeats``
    times: tokens/s side by side (medians) and how many clients got the same text both ways."""
    n, reps = cfg.batching_clients, cfg.batching_repeats
    pairs = []
    for k in range(reps):
        progress(f"batching {k + 1}/{reps}: {n} requests one at a time, then {n} clients at once")
        serial = sequential(url, n, creativity=cfg.creativity,
                            max_new_tokens=cfg.max_new_tokens, timeout_s=cfg.timeout_s)
        batched = drive(url, clients=n, requests=1, max_new_tokens=cfg.max_new_tokens,
                        creativity=cfg.creativity, timeout_s=cfg.timeout_s, server_pid=pid,
                        name="batched")
        pairs.append((batched, serial))
    return batching_summary(pairs)


def batching_summary(pairs: list[tuple[Round, Round]]) -> dict:
    """From (batched, one-at-a-time) round pairs: the median of each's tokens/s, their ratio,
    every pair's ratio, and how many clients got the same text both ways (in every pair)."""
    b = [x.summary() for x, _ in pairs]
    s = [y.summary() for _, y in pairs]
    same = min(sum(u.kind == v.kind == "served" and u.text == v.text
                   for u, v in zip(x.outcomes, y.outcomes, strict=True)) for x, y in pairs)
    bm = statistics.median(r["tokens_per_s"] for r in b)
    sm = statistics.median(r["tokens_per_s"] for r in s)
    return {"batched": {**b[-1], "tokens_per_s": bm, "round": "batched (median)"},
            "serial": {**s[-1], "tokens_per_s": sm, "round": "one at a time (median)"},
            "speedup": bm / sm if sm else None,
            "speedups": [x["tokens_per_s"] / y["tokens_per_s"] if y["tokens_per_s"] else None
                         for x, y in zip(b, s, strict=True)],
            "same_text": same, "clients": pairs[0][0].clients, "repeats": len(pairs)}


# ---- the report ------------------------------------------------------------------------------


def _f(v, fmt="{:.2f}"):
    return "—" if v is None else fmt.format(v)


def table(res: dict) -> str:
    head = ("| round | clients | requests | served | rejected | errors | tracebacks | p50 s | "
            "p95 s | max s | tokens/s | RSS max MB |")
    lines = [head, "|" + "---|" * 12]
    rows = list(res["load"])
    if res.get("batching"):
        rows += [res["batching"]["serial"], res["batching"]["batched"]]
    if res.get("soak"):
        rows.append(res["soak"])
    for r in rows:
        lines.append(f"| {r['round']} | {r['clients']} | {r['requests']} | {r['served']} | "
                     f"{r['rejected']} | {r['errors']} | {r['tracebacks']} | {_f(r['p50_s'])} | "
                     f"{_f(r['p95_s'])} | {_f(r['max_s'])} | {_f(r['tokens_per_s'], '{:.1f}')} | "
                     f"{_f(r['rss_mb_max'], '{:.0f}')} |")
    out = ["\n".join(lines)]
    if res.get("batching"):
        b = res["batching"]
        each = ", ".join(_f(x) for x in b.get("speedups", []))
        out.append(f"batching: {b['clients']} clients at once, {_f(b['speedup'])}x the tokens/s "
                   f"of the same requests one at a time (medians of {b.get('repeats', 1)} "
                   f"alternating pairs: {each}); {b['same_text']}/{b['clients']} clients got "
                   "the same text both ways (same seed)")
    if res.get("soak"):
        m = res["soak"]["memory"]
        if m.get("ok") is None:
            out.append(f"soak memory: {m['note']}")
        else:
            out.append(f"soak memory: {m['rss_mb_after_warmup']:.0f} MB after warm-up, peak "
                       f"{m['rss_mb_peak_after']:.0f} MB after it ({m['growth']:+.1%}; limit "
                       f"+{m['limit']:.0%}): {'ok' if m['ok'] else 'EXCEEDED'}")
    firsts = [r.get("first_error") for r in rows if r.get("first_error")]
    if firsts:
        out.append(f"first error: {firsts[0]}")
    busy = [r.get("busy_message") for r in rows if r.get("busy_message")]
    if busy:
        out.append(f"busy answer: {busy[0]}")
    return "\n\n".join(out)
