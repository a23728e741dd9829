"""Stored features: sharded safetensors plus a JSON manifest, written atomically, resumable.

A data directory holds

- ``manifest.json``: the build config (model fingerprint, layers, settings, template, QA file
  hash, ...) and the list of finished units (``{"unit": "b00012-greedy", "shard": ..., "n_tokens":
  ..., "n_answers": ...}``). A unit is written completely (shard, then its answers file) before it
  enters the manifest, and the manifest is replaced by rename, so an interrupted build loses at
  most the unit in progress and a rerun skips every finished unit.
- ``shard-NNNNN.safetensors``: per token, ``layer_<L>`` (n, H) fp16 for each stored layer,
  ``answer`` (n,) int32 (row in the answers file), ``pos`` (n,) int32 (token index in the
  answer), ``token_id`` int32, ``dev`` int8 (-1 undefined, 0, 1), ``stop`` int8, and the
  baselines ``maxprob``, ``entropy``, ``logprob``, ``next_eos_prob`` float32; per answer,
  ``prompt_layer_<L>`` (n_answers, H) fp16: the prompt's last state, which the heads read before
  the first token is drawn (builds before it was added lack it; ``load`` then leaves it out).
- ``shard-NNNNN.jsonl``: one object per answer (item id, topic, setting, text, correct, ...).
- ``shard-NNNNN.layer<L>.safetensors`` (optional): ``layer_<L>`` and ``prompt_layer_<L>`` of a
  layer added after the build (``tigerdecode data add-layers``); a layer every shard has one for
  loads like a built one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file
from safetensors.torch import save_file

from tigerdecode.fsutil import atomic_file, atomic_write

MANIFEST = "manifest.json"
FORMAT = 1
TOKEN_KEYS = ("answer", "pos", "token_id", "dev", "stop", "maxprob", "entropy", "logprob",
              "next_eos_prob")
# columns newer builds add; a shard without one loads it as -1 (undefined)
OPTIONAL_KEYS = ("slot",)


class DataStoreError(ValueError):
    """A data directory is missing, corrupt, or was built with another configuration."""


class FeatureStore:
    """Writer/reader of one data directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ---- writing ----------------------------------------------------------------------------

    def open(self, config: dict) -> set[str]:
        """Start or resume a build; returns the names of units already finished."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        if path.exists():
            manifest = self.manifest()
            if manifest["config"] != config:
                diff = sorted(k for k in set(config) | set(manifest["config"])
                              if config.get(k) != manifest["config"].get(k))
                raise DataStoreError(
                    f"{self.root} was built with a different configuration (differs in {diff}); "
                    "use a new --out directory or the same options to resume")
            return {u["unit"] for u in manifest["units"]}
        self._write_manifest({"format": FORMAT, "config": config, "units": []})
        return set()

    def add_unit(self, unit: str, tokens: dict[str, torch.Tensor], answers: list[dict]) -> None:
        """Write one unit's shard and answers, then record it in the manifest."""
        manifest = self.manifest()
        idx = len(manifest["units"])
        name = f"shard-{idx:05d}"
        tensors = {k: v.contiguous() for k, v in tokens.items()}
        with atomic_file(self.root / f"{name}.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"unit": unit})
        lines = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)
        atomic_write(self.root / f"{name}.jsonl", lines.encode())
        n_tokens = int(tokens["answer"].shape[0])
        manifest["units"].append({"unit": unit, "shard": name, "n_tokens": n_tokens,
                                  "n_answers": len(answers)})
        self._write_manifest(manifest)

    def answers_of(self, shard: str) -> list[dict]:
        """A shard's answers, one JSON object a line. Lines end at "\n" only: the texts are
        written unescaped (``ensure_ascii=False``), and a model may write U+2028, U+0085 or
        another character ``str.splitlines`` would also break a line at."""
        text = (self.root / f"{shard}.jsonl").read_text(encoding="utf-8")
        return [json.loads(s) for s in text.split("\n") if s.strip()]

    def _write_manifest(self, manifest: dict) -> None:
        atomic_write(self.root / MANIFEST, json.dumps(manifest, indent=1).encode())

    # ---- reading ----------------------------------------------------------------------------

    def manifest(self) -> dict:
        path = self.root / MANIFEST
        if not path.is_file():
            raise DataStoreError(f"{self.root} has no {MANIFEST}; build it with "
                                 "`tigerdecode data build --qa FILE --out DIR`")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataStoreError(f"{path} is corrupt ({e}); rebuild the data") from e
        if manifest.get("format") != FORMAT:
            raise DataStoreError(f"{path} has format {manifest.get('format')!r}; "
                                 f"this tigerdecode reads format {FORMAT}")
        return manifest

    def extra_layers(self) -> list[int]:
        """Layers added after the build that every finished shard has (``data add-layers``)."""
        units = self.manifest()["units"]
        found = None
        for unit in units:
            mine = {int(p.name.rsplit(".layer", 1)[1].split(".")[0])
                    for p in self.root.glob(f"{unit['shard']}.layer*.safetensors")}
            found = mine if found is None else found & mine
        return sorted(found or ())

    def _side(self, shard: str, key: str, layer: int) -> np.ndarray:
        path = self.root / f"{shard}.layer{layer}.safetensors"
        try:
            with safe_open(str(path), framework="np") as f:
                return f.get_tensor(key)
        except (OSError, SafetensorError) as e:
            raise DataStoreError(f"{self.root}: {path.name} is unreadable ({e}); delete it and "
                                 "run `tigerdecode data add-layers` again") from e

    def load(self, layers: list[int] | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:
        """All finished units: token arrays (``answer`` re-indexed into the answers list,
        ``layer_<L>`` for the asked layers) and the answers (each with ``setting``, ``topic``...)."""
        manifest = self.manifest()
        built = manifest["config"]["layers"]
        stored = sorted(set(built) | set(self.extra_layers()))
        layers = built if layers is None else layers
        missing = [x for x in layers if x not in stored]
        if missing:
            raise DataStoreError(f"{self.root} stores layers {stored}; {missing} were asked for "
                                 "(`tigerdecode data add-layers` adds layers to a built store)")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in TOKEN_KEYS + OPTIONAL_KEYS}
        parts.update({f"layer_{x}": [] for x in layers})
        answers: list[dict] = []
        for unit in manifest["units"]:
            try:
                t = load_file(str(self.root / f"{unit['shard']}.safetensors"))
                rows = self.answers_of(unit["shard"])
            except (OSError, ValueError, SafetensorError) as e:
                raise DataStoreError(f"{self.root}: shard {unit['shard']} is unreadable ({e}); "
                                     "delete it from the manifest and resume the build") from e
            if len(t["answer"]) != unit["n_tokens"] or len(rows) != unit["n_answers"]:
                raise DataStoreError(f"{self.root}: shard {unit['shard']} does not match the "
                                     "manifest; rebuild the data")
            for x in layers:
                if x not in built:
                    t[f"layer_{x}"] = self._side(unit["shard"], f"layer_{x}", x)
                    if len(t[f"layer_{x}"]) != unit["n_tokens"]:
                        raise DataStoreError(f"{self.root}: {unit['shard']}.layer{x} does not "
                                             "match its shard; delete it and add the layer again")
            t["answer"] = t["answer"] + len(answers)
            for k in OPTIONAL_KEYS:
                t.setdefault(k, np.full(len(t["answer"]), -1, dtype=np.int8))
            for k in parts:
                parts[k].append(t[k])
            answers.extend(rows)
        if not answers:
            raise DataStoreError(f"{self.root} holds no finished units yet")
        return {k: np.concatenate(v) for k, v in parts.items()}, answers

    def load_prompt_states(self, layers: list[int]) -> dict[int, np.ndarray] | None:
        """Per answer (in :meth:`load`'s order), the prompt's last state ``{layer: (A, H)}``;
        None when a shard predates them."""
        out: dict[int, list[np.ndarray]] = {x: [] for x in layers}
        manifest = self.manifest()
        built = manifest["config"]["layers"]
        extra = [x for x in layers if x not in built]
        for unit in manifest["units"]:
            for x in extra:
                out[x].append(self._side(unit["shard"], f"prompt_layer_{x}", x))
            path = self.root / f"{unit['shard']}.safetensors"
            try:
                with safe_open(str(path), framework="np") as f:
                    names = set(f.keys())
                    if not all(f"prompt_layer_{x}" in names for x in layers if x in built):
                        return None
                    for x in (x for x in layers if x in built):
                        a = f.get_tensor(f"prompt_layer_{x}")
                        if len(a) != unit["n_answers"]:
                            raise DataStoreError(f"{self.root}: shard {unit['shard']} does not "
                                                 "match the manifest; rebuild the data")
                        out[x].append(a)
            except (OSError, SafetensorError) as e:
                raise DataStoreError(f"{self.root}: shard {unit['shard']} is unreadable ({e}); "
                                     "delete it from the manifest and resume the build") from e
        return {x: np.concatenate(v) for x, v in out.items()}
