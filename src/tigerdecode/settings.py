"""One generation request, validated once, and the settings files that fill it.

:class:`GenerateRequest` is what every entry path builds (``tigerdecode.generate``, ``wrap``,
``ControlledGenerator.generate_text``, the CLI and the demo): creativity, token budget, seed,
method, policy or baseline overrides, judge options, stopping and streaming.

A settings file is what the demo's trade-off tab exports and what
``tigerdecode generate --config FILE`` and ``tigerdecode.generate(..., config=...)`` read.

A settings file is a small JSON object::

    {"format": "tigerdecode.settings/1", "method": "tigerdecode", "creativity": 0.3,
     "overrides": {"judge": true, "max_rewrites": 2}, "source": {...}}

``overrides`` are keyword arguments for the generator (thresholds, judge, seed, ...); ``source``
is free-form provenance (which evaluation row it came from) and is ignored when decoding. Every
value is bounded and checked on load, so a hand-edited file fails with a message that names the
bad field, what is allowed and how to fix it.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "tigerdecode.settings/1"
MAX_FILE_BYTES = 64_000
MAX_OVERRIDES = 32
MAX_STRING = 500
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# Keys that are settings in their own right, not generator overrides.
_RESERVED = {"creativity", "method", "prompt", "prompts", "format", "config"}


class ConfigError(ValueError):
    """A settings file or value cannot be used; the message says what is wrong and how to fix it."""


@dataclass
class DecodeSettings:
    """Creativity, decoding method and generator overrides, as one validated unit."""

    creativity: float = 0.5
    method: str = "tigerdecode"
    overrides: dict = field(default_factory=dict)
    source: dict | None = None

    def __post_init__(self) -> None:
        self.creativity = _check_creativity(self.creativity)
        self.method = _check_method(self.method)
        self.overrides = _check_overrides(self.overrides)
        if self.source is not None and not isinstance(self.source, dict):
            raise ConfigError(f"'source' must be a JSON object or absent, got {self.source!r}")

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "method": self.method, "creativity": self.creativity,
             "overrides": dict(self.overrides)}
        if self.source is not None:
            d["source"] = self.source
        return d

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``ControlledGenerator.generate_text`` / ``tigerdecode.generate``."""
        return {"creativity": self.creativity, "method": self.method, **self.overrides}


def _check_int_size(key: str, value) -> None:
    """An integer too large for a float (``float(10**400)`` raises OverflowError, not a
    ValueError) is refused here, by name, before any check converts it."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        raise ConfigError(f"{key!r} is an integer of {len(str(abs(value)))} digits; expected "
                          "one between -2**63 and 2**63 - 1")


def _check_creativity(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"'creativity' must be a number in [0, 1], got {value!r}")
    _check_int_size("creativity", value)
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"'creativity' must lie in [0, 1], got {value}; "
                          "0 is the most factual setting, 1 the most creative")
    return value


def _check_method(value) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_+\-]{0,63}", value):
        raise ConfigError(f"'method' must be a decoding method name such as 'tigerdecode', "
                          f"'greedy', 'temperature', 'top_p' or 'min_p', got {value!r}")
    return value


def _check_value(key: str, value):
    if value is None or isinstance(value, bool):
        return value
    _check_int_size(key, value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(f"override {key!r} must be a finite number, got {value}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ConfigError(f"override {key!r} is {len(value)} characters; at most "
                              f"{MAX_STRING} are accepted")
        return value
    raise ConfigError(f"override {key!r} must be a number, true/false, a string or null, "
                      f"got {type(value).__name__}")


def _check_overrides(overrides) -> dict:
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"'overrides' must be a JSON object of name -> value, got {overrides!r}")
    if len(overrides) > MAX_OVERRIDES:
        raise ConfigError(f"'overrides' has {len(overrides)} entries; at most {MAX_OVERRIDES}")
    out = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise ConfigError(f"override name {key!r} is not a valid name (lower-case letters, "
                              "digits and '_', e.g. 'max_rewrites')")
        if key in _RESERVED:
            raise ConfigError(f"{key!r} is a top-level setting, not an override; move it out "
                              "of 'overrides'")
        out[key] = _check_value(key, value)
    return out


def from_dict(d) -> DecodeSettings:
    """Validate a parsed settings object (unknown top-level keys are errors, not ignored)."""
    if not isinstance(d, dict):
        raise ConfigError(f"a settings file must hold a JSON object, got {type(d).__name__}")
    fmt = d.get("format", FORMAT)
    if fmt != FORMAT:
        raise ConfigError(f"unsupported settings format {fmt!r}; this version reads {FORMAT!r}")
    unknown = set(d) - {"format", "method", "creativity", "overrides", "source"}
    if unknown:
        raise ConfigError(f"unknown settings field(s) {sorted(unknown)}; allowed: format, "
                          "method, creativity, overrides, source")
    return DecodeSettings(creativity=d.get("creativity", 0.5),
                          method=d.get("method", "tigerdecode"),
                          overrides=d.get("overrides") or {}, source=d.get("source"))


def _unique_keys(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) < len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {dup!r} appears more than once in one object; keep one")
    return d


def load_settings(path: str | os.PathLike) -> DecodeSettings:
    """Read and validate a settings file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"settings file {str(p)!r} does not exist or is not a file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"settings file {str(p)!r} is {size} bytes; at most "
                          f"{MAX_FILE_BYTES} are accepted (it should be a few hundred)")
    try:  # utf-8-sig: a byte-order mark (some Windows editors add one) is skipped
        d = json.loads(p.read_text(encoding="utf-8-sig"), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ConfigError(f"settings file {str(p)!r} is nested too deeply; expected a flat "
                          "JSON object such as the demo exports") from None
    except ValueError as e:  # bad JSON or UTF-8, a repeated key, a 5000-digit number
        raise ConfigError(f"settings file {str(p)!r} is not valid JSON: {e}") from None
    try:
        return from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"settings file {str(p)!r}: {e}") from None


def save_settings(settings: DecodeSettings, path: str | os.PathLike) -> Path:
    """Write a settings file atomically (temp file in the same folder, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(settings.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def resolve(config) -> DecodeSettings:
    """Accept what ``config=`` may be given: a path, a dict, or ``DecodeSettings``."""
    if isinstance(config, DecodeSettings):
        return config
    if isinstance(config, dict):
        return from_dict(config)
    if isinstance(config, str | os.PathLike):
        return load_settings(config)
    raise ConfigError(f"config must be a settings file path, a dict or DecodeSettings, "
                      f"got {type(config).__name__}")


def merge(config, explicit: dict) -> dict:
    """Generator kwargs from ``config`` with explicitly passed kwargs taking precedence."""
    kwargs = resolve(config).generate_kwargs() if config is not None else {}
    kwargs.update({k: v for k, v in explicit.items() if v is not None})
    return kwargs


def for_generate(config, explicit: dict) -> dict:
    """Keyword arguments for ``tigerdecode.generate(..., config=...)``: the settings' values
    under the explicitly passed (non-None) ones; ``"ensemble": true`` means the self-ensemble."""
    kw = merge(config, explicit)
    if kw.get("ensemble") is True:
        kw["ensemble"] = "self"
    elif kw.get("ensemble") is False:
        kw.pop("ensemble")
    return kw


def supported_overrides() -> set[str]:
    """Names controlled decoding accepts as overrides: Policy fields, the judge's options and
    the loop's own settings."""
    from tigerdecode.judge.rewrite import JUDGE_OPTIONS
    from tigerdecode.policy.knob import Policy

    return (set(Policy.__dataclass_fields__) - {"creativity"}) | set(JUDGE_OPTIONS) | set(
        LOOP_OPTIONS) | {"seed", "max_new_tokens", "raw", "consensus"}


# Overrides that are options of `tigerdecode generate` itself (the rest go to the generator).
_COMMAND_OPTIONS = ("seed", "max_new_tokens", "raw", "temperature", "ensemble")


def for_command(path, params: dict, given: set[str]) -> dict:
    """``tigerdecode generate --config FILE``: the command's parameters with the file's values
    filled in wherever the command line gave none, plus ``"overrides"`` for the generator."""
    s = load_settings(path)
    out, extra = dict(params), dict(s.overrides)
    pairs = [("creativity", s.creativity), ("method", s.method)]
    pairs += [(k, extra.pop(k)) for k in list(extra) if k in params and k in _COMMAND_OPTIONS]
    for key, value in pairs:
        if key not in given:
            out[key] = value
    supported = supported_overrides()
    if out.get("method") == "tigerdecode":
        unknown = sorted(set(extra) - supported)
        if unknown:
            raise ConfigError(f"settings file {str(path)!r}: this build's controlled decoding "
                              f"has no setting {unknown}; supported: {sorted(supported)}")
    out["overrides"] = extra
    return out


# ---- the request ------------------------------------------------------------------------------

MAX_NEW_TOKENS_LIMIT = 4096
LOOP_OPTIONS = ("min_new_tokens", "streamer", "stopping_criteria", "on_token", "fast")
MAX_CONSENSUS = 32


def validate_max_new_tokens(max_new_tokens, limit: int = MAX_NEW_TOKENS_LIMIT) -> int:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
        raise ValueError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    if not 1 <= max_new_tokens <= limit:
        raise ValueError(f"max_new_tokens must lie in [1, {limit}], got {max_new_tokens}")
    return max_new_tokens


def _check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return seed


@dataclass
class GenerateRequest:
    """Everything one generation call asks for, checked once at construction.

    ``overrides``: Policy fields for ``method="tigerdecode"``, else the baseline's settings
    (``temperature``, ``top_p``, ...). ``judge``: ``(spec, JudgeSettings)`` when the judge is on.
    ``fast``: decode on a static KV cache with a compiled step (same outputs; None: the
    generator's default). ``consensus``: samples drawn per distinct prompt; each answer returned
    is among the most agreed-with of them (:mod:`tigerdecode.policy.consensus`; 1: off).
    """

    creativity: float = 0.5
    max_new_tokens: int = 64
    seed: int | None = None
    method: str = "tigerdecode"
    overrides: dict = field(default_factory=dict)
    judge: tuple | None = None
    raw: bool = False
    min_new_tokens: int = 0
    streamer: object = None
    stopping_criteria: object = None
    on_token: object = None
    fast: bool | None = None
    consensus: int = 1

    def __post_init__(self):
        from tigerdecode.methods.baselines import METHODS
        from tigerdecode.policy.knob import Policy, check_creativity

        for key, value in {"creativity": self.creativity, **self.overrides}.items():
            _check_int_size(key, value)
        self.creativity = check_creativity(self.creativity)
        self.max_new_tokens = validate_max_new_tokens(self.max_new_tokens)
        self.seed = _check_seed(self.seed)
        if not isinstance(self.raw, bool):
            raise ValueError(f"raw must be true or false, got {self.raw!r}")
        if self.fast is not None and not isinstance(self.fast, bool):
            raise ValueError(f"fast must be true, false or None (the generator's default), got "
                             f"{self.fast!r}")
        if (isinstance(self.consensus, bool) or not isinstance(self.consensus, int)
                or not 1 <= self.consensus <= MAX_CONSENSUS):
            raise ValueError(f"consensus is the number of samples drawn per prompt to choose the "
                             f"most agreed-with from: an integer in [1, {MAX_CONSENSUS}] (1: off),"
                             f" got {self.consensus!r}")
        if self.method != "tigerdecode" and self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose 'tigerdecode' or one of "
                             f"{METHODS}")
        if not isinstance(self.min_new_tokens, int) or not 0 <= self.min_new_tokens <= \
                self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be an integer in [0, max_new_tokens="
                             f"{self.max_new_tokens}], got {self.min_new_tokens!r}")
        if self.judge is not None and self.method != "tigerdecode":
            raise ValueError(f"judge=True rewrites with the controlled decoder; it needs "
                             f"method='tigerdecode', got {self.method!r}")
        if self.method == "tigerdecode":
            fields_ = set(Policy.__dataclass_fields__) - {"creativity"}
            bad = sorted(set(self.overrides) - fields_)
            if bad:
                raise TypeError(f"tigerdecode got unexpected arguments {bad}; controlled decoding takes "
                                f"Policy fields {sorted(fields_)}, the judge's options, "
                                f"{', '.join(LOOP_OPTIONS)}, seed, max_new_tokens and raw (set "
                                "sampling through creativity=, or method='top_p' etc. with "
                                "temperature=/top_p=)")
            self.policy()  # validates every field now, not at the first step

    def policy(self, creativity: float | None = None):
        """The Policy this request decodes with (at ``creativity`` if given, e.g. a rewrite)."""
        from tigerdecode.policy.knob import Policy

        c = self.creativity if creativity is None else creativity
        return Policy(c, **self.overrides)

    @classmethod
    def build(cls, config=None, *, defaults: dict | None = None, **kwargs) -> GenerateRequest:
        """A request from keyword arguments, with a settings file / dict (``config``) under the
        ones passed explicitly (None counts as not passed) and ``defaults`` under both."""
        from tigerdecode.judge.rewrite import pop_judge_options

        kw = dict(defaults or {})
        if config is not None:
            kw.update(for_generate(config, {}))
        kw.update({k: v for k, v in kwargs.items() if v is not None})
        kw.pop("ensemble", None)  # a generator-level choice, not a per-request one
        judging = pop_judge_options(kw)
        own = {k: kw.pop(k) for k in ("creativity", "max_new_tokens", "seed", "method", "raw",
                                       "consensus", *LOOP_OPTIONS) if k in kw}
        return cls(**own, overrides=kw, judge=judging)
