"""FastRunner: :class:`~tigerdecode.decode.runner.ModelRunner`'s interface over a preallocated
KV cache and a compiled one-token step.

Why: one eager decode step of a small model is many small kernels called from Python, plus a
``torch.cat`` per layer as the cache grows. Here the cache is allocated once per run (rows ×
a length bucket), every step writes one column of it in place, and the step (the model's
forward over that cache, the attention mask built from a position counter, the tapped hidden
states picked out of the forward's own outputs) is one ``torch.compile`` graph (inductor; C++
kernels on a CPU). Shapes are static, so a process compiles once per (model, rows, length
bucket) and reuses it for every later run.

The step keeps the eager runner's semantics: left-padded rows, each row's real positions,
``undo()`` as a rewind of the write position (the stale column is masked out, then
overwritten), so undo equals recomputation. Prefill runs eagerly (once per run). Anything the
fast path cannot do falls back to the eager :class:`ModelRunner` (same outputs) with a one-line
notice: a model with sliding-window or non-attention layers, a model spread over devices,
tapped layers the forward's outputs do not expose, a forward that does not accept the cache,
or a compiler that is not available (then the same static-cache step runs uncompiled).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
import weakref

import torch

from tigerdecode.decode.runner import ModelRunner, has_sliding_window, input_device
from tigerdecode.model.taps import HiddenStateTap, num_layers

MIN_BUCKET = 256  # cache lengths are powers of two from here: few shapes, few compiles
RECOMPILE_LIMIT = 64  # compiled variants kept per step function (models × rows × buckets)
_NOTICES: set[str] = set()
# per model: whether its forward accepts ``cache=`` (5.24) or only ``past_key_values=`` (5.17)
_CACHE_KWARG: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def notice(msg: str) -> None:
    """Say once per process why the fast path is not (fully) used."""
    if msg not in _NOTICES:
        _NOTICES.add(msg)
        warnings.warn(f"tigerdecode fast path: {msg}", stacklevel=3)


def bucket(n: int) -> int:
    """The cache length for ``n`` positions: the next power of two, at least MIN_BUCKET."""
    return max(MIN_BUCKET, 1 << max(0, n - 1).bit_length())


def unsupported(model) -> str | None:
    """Why the fast path cannot run this model (None when it can)."""
    from tigerdecode.model.load import text_config

    cfg = text_config(model)
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return (f"{type(model).__name__} has {sorted(kinds - {'full_attention'})} layers; the "
                "static cache covers full-attention layers only")
    if has_sliding_window(model):
        return f"{type(model).__name__} uses a sliding attention window"
    devices = {str(p.device) for p in model.parameters()}
    if len(devices) > 1:
        return f"the model is spread over {sorted(devices)}"
    if getattr(cfg, "is_encoder_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return "encoder-decoder / cross-attention models are not supported"
    return None


def _cache_kwarg(model) -> str:
    name = _CACHE_KWARG.get(model)
    if name is None:
        params = inspect.signature(model.forward).parameters
        name = "cache" if "cache" in params else "past_key_values"
        _CACHE_KWARG[model] = name
    return name


class StaticKV:
    """The KV cache the model's attention layers write into: per layer a preallocated
    (R, H_kv, L, D) key and value buffer. ``update`` writes the new columns at ``index`` (a
    0-dim tensor, so the compiled step does not specialise on it) and returns the whole buffer
    (``visible`` columns when set: the eager prefill attends to the prompt only). Allocation is
    lazy (the first update of a layer), so any head layout works."""

    is_compileable = True

    def __init__(self, keys: list, values: list, index: torch.Tensor, length: int,
                 visible: int | None = None):
        self.keys, self.values, self.index = keys, values, index
        self.length, self.visible = length, visible

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == len(self.keys):  # prefill: allocate (R, H, L, D)
            R, H, _, D = key_states.shape
            for buf, x in ((self.keys, key_states), (self.values, value_states)):
                buf.append(x.new_zeros(R, H, self.length, x.shape[-1]))
        k, v = self.keys[layer_idx], self.values[layer_idx]
        cols = self.index + torch.arange(key_states.shape[-2], device=k.device)
        k.index_copy_(2, cols, key_states.to(k.dtype))
        v.index_copy_(2, cols, value_states.to(v.dtype))
        if self.visible is not None:
            return k[:, :, : self.visible], v[:, :, : self.visible]
        return k, v

    def get_seq_length(self, layer_idx: int = 0):
        return self.index

    def __len__(self) -> int:
        return len(self.keys)


def _mask(allowed: torch.Tensor, model, dtype) -> torch.Tensor:
    """(R, q, L) bool → the 4D mask the model's attention takes: bool for SDPA, additive
    float (0 / dtype min) for the eager implementation, as transformers builds them."""
    if getattr(model.config, "_attn_implementation", "sdpa") == "sdpa":
        return allowed[:, None]
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


@contextlib.contextmanager
def _untied(model, untie: bool):
    """With the last layer tapped, have the forward's hidden states end with that block's
    output (what the tap reads), not the final-normed state; restored afterwards."""
    if not untie:
        yield
        return
    cfg, missing = model.config, object()
    old = cfg.__dict__.get("tie_last_hidden_states", missing)
    cfg.tie_last_hidden_states = False
    try:
        yield
    finally:
        if old is missing:
            del cfg.tie_last_hidden_states
        else:
            cfg.tie_last_hidden_states = old


def _forward(model, ids, pos, mask, kv: StaticKV, taps: tuple[int, ...]):
    """One forward over the static cache → (last logits (R, V), tapped states per layer)."""
    out = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=True,
                logits_to_keep=1, output_hidden_states=bool(taps), **{_cache_kwarg(model): kv})
    # layer n + 1 (the final normed state) is HF's last entry while it stays tied (see _untied)
    n = len(out.hidden_states) - 1 if taps else 0
    states = tuple(out.hidden_states[min(x, n)][:, -1] for x in taps) if taps else ()
    return out.logits[:, -1], states


def _math_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
               enable_gqa=False):
    """``scaled_dot_product_attention`` for one query position as two matmuls and a softmax
    in fp32: on a CPU the fused kernel is several times slower than this in bf16/fp16."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    s = (query @ key.transpose(-2, -1)).float() * (scale or query.shape[-1] ** -0.5)
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else s + attn_mask.float()
    return s.softmax(-1).to(query.dtype) @ value


class _HalfAttention(torch.overrides.TorchFunctionMode):
    """Inside the traced step of a bf16/fp16 model: attention through :func:`_math_sdpa`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention and not kwargs.get(
                "is_causal") and not kwargs.get("dropout_p"):
            return _math_sdpa(*args, **kwargs)
        return func(*args, **kwargs)


def _step(model, ids, pos, keep, index, keys, values, taps):
    """The compiled region: one token per row → (logits (R, V), tapped (R, H) states)."""
    L = keep.shape[1]
    allowed = keep & (torch.arange(L, device=keep.device) <= index)  # (R, L)
    mask = _mask(allowed[:, None], model, keys[0].dtype)  # (R, 1, 1, L)
    out = _forward(model, ids, pos, mask, StaticKV(keys, values, index, L), taps)
    index.add_(1)
    return out


COMPILE = True  # False: the static-cache step runs uncompiled (tests of every architecture)
COMPILE_OPTIONS: dict = {}  # inductor options
SKIP_GUARDS = True  # see FastRunner._run
_compiled_step = None
_KNOWN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> compiled step keys


def _compiled():
    global _compiled_step
    if _compiled_step is None:
        _compiled_step = torch.compile(_step, dynamic=False, fullgraph=True,
                                       options=COMPILE_OPTIONS or None)
    return _compiled_step


class FastRunner:
    """Prefill once (eager), then one compiled step per token over a static KV cache;
    ``undo()`` rewinds one position. Same interface and outputs as :class:`ModelRunner`."""

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 tap_layers: list[int] | None = None, cache=None, *,
                 max_new_tokens: int = 0, compile: bool | None = None):
        self.model = model
        dev = input_device(model)
        self.input_ids = input_ids.to(dev)  # (R, T)
        self.prompt_mask = attention_mask.to(dev).long()  # (R, T)
        self.tap_layers = sorted(set(tap_layers or []))
        self.prefix = cache  # a DynamicCache holding the first positions (judge's rewind)
        self.length = bucket(self.input_ids.shape[1] + max(1, max_new_tokens))
        self.use_compile = COMPILE if compile is None else compile
        self.states: dict[int, torch.Tensor] = {}
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.pos = None  # (R,) position of each row's last token
        self.eager: ModelRunner | None = None  # set when falling back

    @classmethod
    def create(cls, model, input_ids, attention_mask, tap_layers=None, cache=None, *,
               max_new_tokens: int = 0, compile: bool | None = None):
        """A FastRunner, or the eager ModelRunner (with a notice) for a model it cannot run."""
        why = unsupported(model)
        n = num_layers(model)
        if why is None and {n, n + 1} <= set(tap_layers or []):
            why = f"heads read both block {n} and the final normed state ({n + 1})"
        if why is not None:
            notice(f"{why}; decoding eagerly")
            return ModelRunner(model, input_ids, attention_mask, tap_layers, cache=cache)
        return cls(model, input_ids, attention_mask, tap_layers, cache,
                   max_new_tokens=max_new_tokens, compile=compile)

    # ---- the runner interface ------------------------------------------------------------------

    @property
    def cache(self):
        """The filled part of the KV cache as a ``DynamicCache`` (what the judge reads)."""
        if self.eager is not None:
            return self.eager.cache
        from transformers import DynamicCache

        n = int(self.index)
        out = DynamicCache(config=self.model.config)
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            out.update(k[:, :, :n].clone(), v[:, :, :n].clone(), i)
        return out

    @torch.inference_mode()
    def prefill(self) -> torch.Tensor:
        try:
            return self._prefill()
        except (TypeError, AttributeError, NotImplementedError, RuntimeError) as e:
            # a forward that does not take our cache or 4D mask: redo it the eager way
            notice(f"{type(self.model).__name__}'s forward does not run on the static cache "
                   f"({type(e).__name__}: {str(e)[:120]}); decoding eagerly")
            return self._fall_back().prefill()

    def _fall_back(self) -> ModelRunner:
        self.keys, self.values, self.states = [], [], {}
        self.eager = ModelRunner(self.model, self.input_ids, self.prompt_mask,
                                 self.tap_layers or None, cache=self.prefix)
        return self.eager

    def _prefill(self) -> torch.Tensor:
        R, T = self.input_ids.shape
        dev = self.input_ids.device
        n0 = 0 if self.prefix is None else int(self.prefix.get_seq_length())
        self.index = torch.zeros((), dtype=torch.long, device=dev)
        self.keep = torch.ones(R, self.length, dtype=torch.bool, device=dev)  # (R, L)
        self.keep[:, :T] = self.prompt_mask.bool()
        pos = (self.prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (R, T) real positions
        self.pos = pos[:, -1]
        kv = StaticKV(self.keys, self.values, self.index, self.length, visible=T)
        if n0:
            for layer in self.prefix.layers:
                kv.update(layer.keys, layer.values, len(self.keys))
            self.index.fill_(n0)
        cols = torch.arange(T, device=dev)
        allowed = self.keep[:, None, :T] & (cols[None, None, :] <= cols[n0:, None][None])
        taps, untie = self._taps()
        dtype = self.model.get_input_embeddings().weight.dtype
        tap = HiddenStateTap(self.model, taps) if taps else contextlib.nullcontext()
        with tap, _untied(self.model, untie):
            logits, states = _forward(self.model, self.input_ids[:, n0:], pos[:, n0:],
                                      _mask(allowed, self.model, dtype), kv, taps)
            if taps and not all(torch.equal(s, tap.states[x][:, -1])
                                for x, s in zip(taps, states, strict=True)):
                raise RuntimeError(f"the forward's hidden states differ from the tapped layers "
                                   f"{list(taps)}")
        self.index.fill_(T)
        self.states = dict(zip(taps, states, strict=True))
        self.signature = hash((type(self.model), *map(id, self.model.parameters()),
                               *map(id, self.model.buffers())))
        return logits

    def _taps(self) -> tuple[tuple[int, ...], bool]:
        taps = tuple(self.tap_layers)
        return taps, bool(taps) and taps[-1] == num_layers(self.model)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (R,) → next logits (R, V)."""
        if self.eager is not None:
            return self.eager.step(tokens)
        if int(self.index) >= self.length:
            self._grow()
        self.pos = self.pos + 1
        taps, untie = self._taps()
        args = (self.model, tokens.to(self.pos.device)[:, None], self.pos[:, None], self.keep,
                self.index, self.keys, self.values, taps)
        with _untied(self.model, untie):
            logits, states = self._run(args)
        self.states = dict(zip(taps, states, strict=True))
        return logits

    def _key(self, args) -> tuple:
        """Everything the compiled variants of one model differ in: shapes, dtype, tapped
        layers, and the identity of every parameter and buffer (taken at prefill), so a model
        changed in between (quantized, cast, weights replaced) is never run on a stale graph."""
        return (tuple(self.keep.shape), self.keys[0].dtype, len(self.keys), args[7],
                torch.is_inference_mode_enabled(), self.signature)

    def _run(self, args):
        if self.use_compile:
            at = int(self.index)
            known = _KNOWN.setdefault(self.model, set())
            key = self._key(args)
            half = self.keys[0].dtype in (torch.bfloat16, torch.float16)
            try:
                with torch._dynamo.config.patch(recompile_limit=max(
                        RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)), \
                        _HalfAttention() if half else contextlib.nullcontext():
                    if SKIP_GUARDS and key in known and hasattr(torch.compiler, "set_stance"):
                        # This exact variant ran before, so its graph exists: evaluate only the
                        # guards that tell the compiled variants apart (checking every parameter
                        # each step costs milliseconds on a CPU, a third of a small model's step).
                        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
                            return _compiled()(*args)
                    out = _compiled()(*args)
                    known.add(key)
                    return out
            except Exception as e:  # no C++ compiler, an op inductor cannot lower, ...
                self.index.fill_(at)
                self.use_compile = False
                notice(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}"
                       "); running the static-cache step uncompiled")
        return _step(*args)

    def _grow(self) -> None:
        """More steps than the bucket holds: move the cache into the next bucket."""
        old = self.length
        self.length = bucket(old + 1)
        R = self.keep.shape[0]
        keep = torch.ones(R, self.length, dtype=torch.bool, device=self.keep.device)
        keep[:, :old] = self.keep
        self.keep = keep
        for buf in (self.keys, self.values):
            for i, x in enumerate(buf):
                y = x.new_zeros(*x.shape[:2], self.length, x.shape[-1])
                y[:, :, :old] = x
                buf[i] = y

    def undo(self) -> None:
        """Forget the last step: move the write position back one column."""
        if self.eager is not None:
            return self.eager.undo()
        self.index.sub_(1)
        self.pos = self.pos - 1

    def last_states(self, rows: slice) -> dict[int, torch.Tensor]:
        """Tapped states at the last position for ``rows``: {layer: (B, H)}."""
        if self.eager is not None:
            return self.eager.last_states(rows)
        return {k: v[rows] for k, v in self.states.items()}

    def close(self) -> None:
        if self.eager is not None:
            self.eager.close()
        self.states = {}


def runner_factory(fast: bool, max_new_tokens: int):
    """What the decode loop builds a model's runner with: ModelRunner, or FastRunner sized for
    ``max_new_tokens`` (same call signature)."""
    if not fast:
        return ModelRunner

    def new(model, input_ids, attention_mask, tap_layers=None, cache=None):
        return FastRunner.create(model, input_ids, attention_mask, tap_layers, cache,
                                 max_new_tokens=max_new_tokens)

    return new
