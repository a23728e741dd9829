"""What the demo runs on: one loaded model, its controlled generators (one per ensemble choice,
built lazily and kept), input bounds, and a micro-batcher (``batcher.py``) that owns the model:
requests waiting with the same settings decode together, each row with its own prompt, seed and
stream, and requests beyond the waiting bound are told to retry.

The app never touches torch directly; everything goes through ``DemoBackend``, so tests can drive
the same app with a tiny model.
"""

from __future__ import annotations

import inspect
import itertools
import math
import queue
import secrets
import threading
from dataclasses import dataclass

from tigerdecode.demos.batcher import MicroBatcher, RowSeeds
from tigerdecode.result import GenerationResult, TokenTrace

FACTUAL_PERSONA = ""  # empty: the model's own default system turn (what the heads learned on)
try:
    from tigerdecode.methods.ensemble import CREATIVE_PERSONA
except ImportError:  # a build without the ensemble: the checkbox is disabled anyway
    CREATIVE_PERSONA = ""


MAX_GENERATORS = 4


class InputError(ValueError):
    """Input the demo refuses; the message is shown to the user as is."""


class Unavailable(RuntimeError):
    """A feature this build (or this model) does not have; shown to the user as is."""


@dataclass(frozen=True)
class Limits:
    max_prompt_chars: int = 2000
    max_new_tokens: int = 256
    max_seed: int = 2**31 - 1
    max_consensus: int = 9  # samples drawn per request when consensus is on


def check_inputs(limits: Limits, prompt, creativity, max_new_tokens, seed) -> tuple:
    """Validate one request; returns (prompt, creativity, max_new_tokens, seed) normalised."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("The prompt is empty: type a question or the start of a text.")
    if len(prompt) > limits.max_prompt_chars:
        raise InputError(f"The prompt is {len(prompt)} characters; this demo accepts at most "
                         f"{limits.max_prompt_chars}. Shorten it.")
    try:
        creativity = float(creativity)
    except (TypeError, ValueError):
        raise InputError(f"Creativity must be a number in [0, 1], got {creativity!r}.") from None
    if not (math.isfinite(creativity) and 0.0 <= creativity <= 1.0):
        raise InputError(f"Creativity must lie in [0, 1], got {creativity}.")
    n = _whole_number(max_new_tokens, "Max new tokens", limits.max_new_tokens)
    if seed in (None, ""):
        seed = None
    else:
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise InputError(f"Seed must be a whole number or empty, got {seed!r}.") from None
        if not 0 <= seed <= limits.max_seed:
            raise InputError(f"Seed must lie in [0, {limits.max_seed}], got {seed}.")
    return prompt, creativity, n, seed


def check_consensus(limits: Limits, consensus) -> int:
    """The number of samples to choose the answer from: a whole number in [1, max_consensus]."""
    return _whole_number(consensus, "Samples", limits.max_consensus)


def _whole_number(value, what: str, hi: int) -> int:
    """``value`` as an int in [1, hi] (a float such as 3.0 from a slider is accepted)."""
    try:
        x = float(value)
        n = int(x)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a whole number, got {value!r}.") from None
    if n != x or not 1 <= n <= hi:
        raise InputError(f"{what} must be a whole number from 1 to {hi}, got {value}.")
    return n


def policy_defaults() -> dict:
    """The policy thresholds the Advanced panel exposes, with this build's defaults (empty when
    the build has no ``Policy`` with these fields)."""
    try:
        from tigerdecode.policy.knob import Policy
    except ImportError:
        return {}
    fields = Policy.__dataclass_fields__
    names = ("use_resample", "resample_at", "use_abstain", "abstain_at")
    if not all(n in fields for n in names):
        return {}
    return {n: fields[n].default for n in names}


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` names parameter ``name`` explicitly (``**kwargs`` does not count)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _trace_of(args, kwargs, tokenizer) -> tuple[int, TokenTrace] | None:
    """(row, token record) from an ``on_token`` call: either a ``TokenTrace`` (row 0) or the
    decode loop's ``(row, token_id, {"p_stop", "p_dev"})``."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, TokenTrace):
            return 0, a
    if len(args) == 3 and isinstance(args[1], int) and isinstance(args[2], dict):
        row, tok, info = args
        return row, TokenTrace(token=tokenizer.decode([tok]), token_id=tok,
                               p_stop=info.get("p_stop"), p_dev=info.get("p_dev"))
    return None


@dataclass
class _Row:
    """One request as the batcher hands it to :meth:`DemoBackend._run_batch`."""

    prompt: str
    seed: int | None
    on_token: object
    ensemble: tuple[str, str] | None
    kw: dict


class DemoBackend:
    """One model, loaded once, shared by every request of the app."""

    def __init__(self, model, tokenizer, *, model_name: str = "default", heads="auto",
                 judge="auto", limits: Limits | None = None, fast: bool = False,
                 max_batch: int = 16, max_waiting: int = 64, backend: str = "transformers"):
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.fast = fast  # decode on the static-cache compiled step (tigerdecode.decode.fast)
        # "llama-cpp": ``model`` is a LlamaCppModel (a GGUF exported with heads); no judge or
        # ensemble there, and a batch's rows decode one after another
        self.backend = backend
        if backend != "transformers":
            judge = None
        self.heads = heads
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._generators: dict = {}
        self._cls = self._generator_class()
        self.judge, self.judge_note = self._find_judge(judge)
        self._solo = itertools.count()
        self.batcher = MicroBatcher(self._run_batch, max_batch=max_batch,
                                    max_waiting=max_waiting)

    def _find_judge(self, judge) -> tuple[object, str]:
        """(what to pass as ``judge=``, or None; why not, for the UI). ``"auto"`` means the judge
        shipped for this model; a path or a ``Judge`` is used as given."""
        if self.backend != "transformers":
            return None, "the judge needs the transformers backend (it re-reads hidden states)"
        if judge is None or judge is False:
            return None, "judge switched off for this app"
        try:
            from tigerdecode.judge.model import find_shipped_judge
            from tigerdecode.judge.rewrite import pop_judge_options  # noqa: F401 - the rewrite step
        except ImportError:
            return None, "judge not available in this build"
        if isinstance(judge, str) and judge == "auto":
            if find_shipped_judge(self.model, self.tokenizer) is None:
                return None, "no trained judge ships for this model"
            return True, ""
        return judge, ""

    @staticmethod
    def _generator_class():
        try:
            from tigerdecode import ControlledGenerator
        except ImportError:
            return None
        return ControlledGenerator

    def capabilities(self) -> dict:
        """What this build can do, so the UI can disable (and explain) the rest honestly."""
        cls = self._cls
        if cls is None:
            return {"controlled": False, "judge": False, "ensemble": False}
        return {"controlled": True, "judge": self.judge is not None,
                "ensemble": _accepts(cls.__init__, "ensemble") and self.backend == "transformers"}

    def _generator(self, ensemble: tuple[str, str] | None):
        """The generator for one ensemble choice; heads are resolved once and shared, and at
        most ``MAX_GENERATORS`` persona pairs are kept (each holds only small state)."""
        if self._cls is None:
            raise Unavailable("Controlled generation is not available in this build "
                              "(tigerdecode.ControlledGenerator is missing).")
        if None not in self._generators:
            self._generators[None] = self._cls(self.model, self.tokenizer, heads=self.heads,
                                               **self._fast())
        if ensemble is not None and self.backend != "transformers":
            raise Unavailable("The ensemble needs the transformers backend; this demo decodes "
                              "in llama.cpp.")
        if ensemble not in self._generators:
            if len(self._generators) >= MAX_GENERATORS:
                del self._generators[next(k for k in self._generators if k is not None)]
            heads = getattr(self._generators[None], "heads", self.heads)
            self._generators[ensemble] = self._cls(
                self.model, self.tokenizer, heads=heads,
                ensemble=self._ensemble_spec(*ensemble), **self._fast())
        return self._generators[ensemble]

    def _fast(self) -> dict:
        if self.backend != "transformers":
            return {"backend": self.backend}
        return {"fast": True} if self.fast else {}

    def _ensemble_spec(self, factual: str, creative: str):
        """A self-ensemble of the loaded weights with a factual and a creative persona (an empty
        persona means the model's own default system turn)."""
        from tigerdecode.methods.ensemble import Ensemble

        return Ensemble.self_ensemble(self.model, self.tokenizer,
                                      factual=factual.strip() or None,
                                      creative=creative.strip() or None)

    def generate(self, prompt: str, *, creativity: float, max_new_tokens: int | None = None,
                 seed: int | None = None, raw: bool = False, method: str = "tigerdecode",
                 ensemble: tuple[str, str] | None = None, on_token=None, consensus=1,
                 **overrides) -> GenerationResult:
        """One answer; ``on_token(TokenTrace)`` is called as tokens are decided (streaming).
        ``consensus`` > 1: that many samples, the most agreed-with returned (no streaming)."""
        if max_new_tokens is None:
            max_new_tokens = min(48, self.limits.max_new_tokens)
        prompt, creativity, max_new_tokens, seed = check_inputs(
            self.limits, prompt, creativity, max_new_tokens, seed)
        consensus = check_consensus(self.limits, consensus)
        if consensus > 1:
            overrides["consensus"] = consensus
            on_token = None  # the answer is chosen once every sample is done
        if overrides.pop("judge", False):
            if self.judge is None or self._cls is None:
                raise Unavailable(f"The judge cannot run: {self.judge_note}.")
            overrides["judge"] = self.judge
        else:
            overrides.pop("max_rewrites", None)  # only meaningful with the judge
        for persona in ensemble or ():
            if len(persona) > self.limits.max_prompt_chars:
                raise InputError(f"A persona is {len(persona)} characters; this demo accepts at "
                                 f"most {self.limits.max_prompt_chars}. Shorten it.")
        kw = dict(creativity=creativity, max_new_tokens=max_new_tokens, raw=raw,
                  method=method, **overrides)
        job = self.batcher.submit(self._batch_key(ensemble, kw),
                                  _Row(prompt, seed, on_token, ensemble, kw))
        job.done.wait()
        if job.error is not None:
            raise job.error
        result = job.result
        result.timings["queue_wait_s"] = job.started - job.submitted
        return result

    def _batch_key(self, ensemble, kw: dict):
        """Requests with equal keys may share a batch: every setting but the prompt and the seed.
        A judged request, or one whose policy resamples (a retry redraws every row of the
        batch, which would change its neighbours' draws), decodes alone."""
        resamples = kw.get("use_resample", policy_defaults().get("use_resample", False))
        if "judge" in kw or resamples:
            return ("alone", next(self._solo))
        return (ensemble, tuple(sorted(kw.items())))

    def _run_batch(self, key, rows: list[_Row]) -> list[GenerationResult]:
        """Decode ``rows`` (equal settings) as one batch; runs in the batcher's thread. Each row
        keeps its own seed (a row without one gets a random one) and its own token stream."""
        seeds = [r.seed for r in rows]
        if len(rows) == 1 or all(s is None for s in seeds):
            seed = seeds[0]
        else:
            seed = RowSeeds([secrets.randbelow(2**31) if s is None else s for s in seeds])
        kw = dict(rows[0].kw, seed=seed)
        if any(r.on_token is not None for r in rows):
            kw["on_token"] = lambda *a, **k: _forward(rows, a, k, self.tokenizer)
        with self._lock:  # taps and caches are per-generator state: one batch at a time
            results = self._generator(rows[0].ensemble).generate_text(
                [r.prompt for r in rows], **kw)
        if len(rows) > 1:  # the decode's timings are the batch's: say so
            for res in results:
                t = res.timings
                res.timings = {"batch_rows": len(rows),
                               "batch_tokens_per_s": t.get("tokens_per_s", 0.0),
                               "prefill_s": t.get("prefill_s", 0.0),
                               "total_s": t.get("total_s", 0.0),
                               "new_tokens": len(res.token_ids)}
        return results

    def close(self) -> None:
        """Stop the batcher's worker (requests still waiting are not served)."""
        self.batcher.close()

    def stream(self, prompt: str, **kw):
        """Yield ``("token", TokenTrace)`` as tokens come, then ``("done", GenerationResult)``
        or ``("error", exception)``; the generation runs in a worker thread."""
        q: queue.Queue = queue.Queue()

        def work():
            try:
                q.put(("done", self.generate(prompt, on_token=lambda t: q.put(("token", t)),
                                             **kw)))
            except Exception as e:  # noqa: BLE001 - handed to the UI, which shows a message
                q.put(("error", e))

        threading.Thread(target=work, daemon=True).start()
        while True:
            kind, item = q.get()
            yield kind, item
            if kind != "token":
                return


def _forward(rows: list[_Row], args, kwargs, tokenizer) -> None:
    """Hand one decoded token to the stream of the row it belongs to."""
    got = _trace_of(args, kwargs, tokenizer)
    if got is not None and 0 <= got[0] < len(rows) and rows[got[0]].on_token is not None:
        rows[got[0]].on_token(got[1])
