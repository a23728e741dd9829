"""Checkpoint directories shared by the control heads and the judge: ``config.json`` (with the
model fingerprint), one safetensors weights file and ``metrics.json``; written atomically (temp
dir, then rename), read with a clear error for every missing, corrupt or foreign part."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tigerdecode.fsutil import atomic_dir
from tigerdecode.model.load import Fingerprint


def save_checkpoint(path: str | Path, config: dict, state_dict: dict, weights: str,
                    metrics: dict | None = None) -> Path:
    """Write the three files into a temp dir beside ``path``, then rename it into place."""
    with atomic_dir(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(state, str(tmp / weights), metadata={"format": f"tigerdecode-{weights}"})
        (tmp / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))
    return Path(path)


def read_checkpoint(path: str | Path, weights: str, fmt: int, error: type[Exception],
                    what: str) -> tuple[dict, Fingerprint | None, dict]:
    """``(config, fingerprint, state)`` of a checkpoint directory; ``error`` for any problem."""
    path = Path(path)
    for name in ("config.json", weights):
        if not (path / name).is_file():
            raise error(f"{what} checkpoint {path} has no {name}; expected a directory with "
                        f"config.json and {weights} written by tigerdecode")
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        fp = Fingerprint.from_dict(cfg["fingerprint"]) if cfg.get("fingerprint") else None
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise error(f"{what} checkpoint {path}/config.json is corrupt: {e}") from None
    if cfg.get("format") != fmt:
        raise error(f"{what} checkpoint {path} has format {cfg.get('format')!r}; this "
                    f"tigerdecode reads format {fmt}")
    try:
        state = load_file(str(path / weights))
    except (SafetensorError, OSError) as e:
        raise error(f"{what} checkpoint {path}/{weights} is corrupt: {e}") from e
    return cfg, fp, state


def check_state(build, state: dict, error: type[Exception], where) -> None:
    """Raise ``error`` unless ``state`` has exactly the tensors (names, shapes, floating dtypes)
    of the module ``build()`` makes. The module is built on the meta device first, so a config
    that asks for a huge layer fails here instead of allocating it."""
    import torch

    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {sorted(set(want) - set(got))}"] if set(want) - set(got) else []
    if set(got) - set(want):
        problems.append(f"unexpected {sorted(set(got) - set(want))}")
    problems += [f"{k} has shape {list(got[k])}, expected {list(want[k])}"
                 for k in sorted(set(want) & set(got)) if got[k] != want[k]]
    problems += [f"{k} is {v.dtype}, expected a floating-point tensor"
                 for k, v in sorted(state.items()) if not v.is_floating_point()]
    problems += [f"{k} holds NaN or inf values" for k, v in sorted(state.items())
                 if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if problems:
        raise error(f"{where} does not match its config.json: {'; '.join(problems[:5])}"
                    + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                    + "; re-save it with tigerdecode, or fix config.json")


def check_fingerprint(expected: Fingerprint | None, model, tokenizer, where,
                      error: type[Exception], hint: str) -> None:
    """Raise ``error`` naming both fingerprints unless the checkpoint fits this model."""
    from tigerdecode.model.load import fingerprint

    actual = fingerprint(model, tokenizer)
    if expected is None:
        raise error(f"{where} records no model fingerprint; cannot check it fits {actual}")
    if expected != actual:
        raise error(f"{where} was trained for {expected} but the model is {actual}. {hint}")


KINDS = {"heads": "heads.safetensors", "judge": "judge.safetensors"}


def user_heads_dir() -> Path:
    """Where checkpoints a user trains are found by fingerprint:
    ``$TIGERDECODE_CACHE/heads/<name>/`` (any folder name; the fingerprint decides)."""
    from tigerdecode.model.load import cache_dir

    return cache_dir() / "heads"


def find_checkpoint(model, tokenizer, kind: str = "heads") -> Path | None:
    """The checkpoint of ``kind`` ("heads" or "judge") made for this model: the shipped ones
    (subfolders of this package) first, then the user's (:func:`user_heads_dir`)."""
    from importlib.resources import files

    from tigerdecode.model.load import fingerprint

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    fp = fingerprint(model, tokenizer).to_dict()
    for root in (Path(str(files("tigerdecode.heads"))), user_heads_dir()):
        for cfg_path in sorted(root.glob("*/config.json")):
            try:
                cfg = json.loads(cfg_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            is_judge = cfg.get("kind") == "judge"
            if is_judge == (kind == "judge") and cfg.get("fingerprint") == fp and \
                    (cfg_path.parent / KINDS[kind]).is_file():
                return cfg_path.parent
    return None
