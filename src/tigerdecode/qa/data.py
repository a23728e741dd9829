"""QA data: the JSONL format every command takes, the vendored qa_wikidata set, topic splits.

Format, one object a line: ``{"prompt": str, "answers": [str, ...]}`` with optional
``"false_answers": [str]``, ``"id"`` and ``"topic"``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

MAX_LINE_CHARS = 100_000
MAX_PROMPT_CHARS = 20_000
SPLITS = ("train", "validation", "test")


class QAFormatError(ValueError):
    """A QA file is malformed; the message names the file, the line and the fix."""


@dataclass
class QAItem:
    prompt: str
    answers: list[str]
    false_answers: list[str] = field(default_factory=list)
    id: str | None = None
    topic: str | None = None

    def to_dict(self) -> dict:
        d = {"prompt": self.prompt, "answers": self.answers}
        if self.false_answers:
            d["false_answers"] = self.false_answers
        if self.id is not None:
            d["id"] = self.id
        if self.topic is not None:
            d["topic"] = self.topic
        return d


_ALLOWED = {"prompt", "answers", "false_answers", "id", "topic"}


def _str_list(obj, key: str, where: str, required: bool) -> list[str]:
    if key not in obj:
        if required:
            raise QAFormatError(f"{where}: missing required key {key!r}")
        return []
    v = obj[key]
    if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
        raise QAFormatError(f"{where}: {key!r} must be a list of strings, got {v!r:.80}")
    if required and not any(a.strip() for a in v):
        raise QAFormatError(f"{where}: {key!r} must hold at least one non-empty string")
    return v


def _json_object(line: str, where: str) -> dict:
    """One JSONL line as a dict, bounded in size; anything else is a QAFormatError."""
    if len(line) > MAX_LINE_CHARS:
        raise QAFormatError(f"{where}: line is {len(line)} characters; at most {MAX_LINE_CHARS}")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise QAFormatError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(obj, dict):
        raise QAFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_qa_line(line: str, where: str) -> QAItem:
    obj = _json_object(line, where)
    unknown = set(obj) - _ALLOWED
    if unknown:
        raise QAFormatError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ALLOWED)}"
        )
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise QAFormatError(f"{where}: 'prompt' must be a non-empty string, got {prompt!r:.80}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise QAFormatError(f"{where}: prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    for key in ("id", "topic"):
        if key in obj and not isinstance(obj[key], str | int):
            raise QAFormatError(f"{where}: {key!r} must be a string, got {obj[key]!r:.80}")
    return QAItem(
        prompt=prompt,
        answers=_str_list(obj, "answers", where, required=True),
        false_answers=_str_list(obj, "false_answers", where, required=False),
        id=None if obj.get("id") is None else str(obj["id"]),
        topic=None if obj.get("topic") is None else str(obj["topic"]),
    )


def load_qa(path: str | Path, limit: int | None = None) -> list[QAItem]:
    """Read and validate a QA JSONL file. Blank lines are skipped; any bad line raises
    ``QAFormatError`` naming its line number and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(
            f"QA file {path} does not exist; expected a JSONL file with one "
            '{"prompt": ..., "answers": [...]} object a line'
        )
    items: list[QAItem] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            items.append(parse_qa_line(line, f"{path}:{n}"))
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise QAFormatError(f"QA file {path} holds no items; expected at least one JSON line")
    return items


def load_prompts(path: str | Path, limit: int | None = None) -> list[QAItem]:
    """Read an open-prompt JSONL file (``{"prompt": str, "id"?: str, "kind"?: str}`` a line:
    creative prompts with no factual answer). Items come back with ``answers=[]`` and topic
    ``"open:<kind>"``; a bad line raises ``QAFormatError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(f"prompt file {path} does not exist; expected a JSONL file with one "
                            '{"prompt": ...} object a line')
    items: list[QAItem] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            obj = _json_object(line, where)
            prompt = obj.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise QAFormatError(f"{where}: expected an object with a non-empty 'prompt' "
                                    "string")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise QAFormatError(f"{where}: prompt is {len(prompt)} characters; at most "
                                    f"{MAX_PROMPT_CHARS}")
            items.append(QAItem(prompt=prompt, answers=[],
                                id=None if obj.get("id") is None else str(obj["id"]),
                                topic=f"open:{obj.get('kind') or 'open'}"))
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise QAFormatError(f"prompt file {path} holds no prompts; expected at least one line")
    return items


def save_qa(items: list[QAItem], path: str | Path) -> None:
    """Write items as JSONL atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(it.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)


def dataset_path(name: str) -> Path:
    """Path of a vendored dataset file shipped in ``data/`` (package ``tigerdecode.datasets``)."""
    p = Path(str(resources.files("tigerdecode.datasets").joinpath(name)))
    if not p.is_file():
        raise FileNotFoundError(f"vendored dataset {name!r} not found at {p}")
    return p


def qa_wikidata_path() -> Path:
    return dataset_path("qa_wikidata.jsonl")


def split_topics(
    items: list[QAItem],
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    max_heldout_topic_fraction: float = 0.05,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Deterministic, disjoint split of the topics into train / validation / test.

    Topics are ordered by a hash of ``(seed, topic)``, then filled into test and validation
    until each holds about its fraction of the *items*. Topics larger than
    ``max_heldout_topic_fraction`` of all items always go to train, so the held-out sets are
    many distinct relations rather than one giant one (generalisation to unseen relations is
    what the evaluations measure).
    """
    if not 0 < test_fraction < 1 or not 0 <= validation_fraction < 1:
        raise ValueError(f"fractions must lie in (0, 1); got test={test_fraction}, "
                         f"validation={validation_fraction}")
    if test_fraction + validation_fraction >= 1:
        raise ValueError("test_fraction + validation_fraction must be < 1")
    counts = Counter(it.topic or "unknown" for it in items)
    total = sum(counts.values())

    def key(t: str) -> str:
        return hashlib.sha256(f"{seed}:{t}".encode()).hexdigest()

    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    filled = {"test": 0, "validation": 0}
    target = {"test": test_fraction * total, "validation": validation_fraction * total}
    for t in sorted(counts, key=key):
        c = counts[t]
        dest = "train"
        if c <= max_heldout_topic_fraction * total:
            for s in ("test", "validation"):
                if filled[s] + c <= target[s]:
                    dest = s
                    filled[s] += c
                    break
        out[dest].append(t)
    return {s: sorted(v) for s, v in out.items()}


def select_split(items: list[QAItem], split: str, seed: int = 0) -> list[QAItem]:
    """The items whose topic falls in ``split`` ("train", "validation" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    topics = set(split_topics(items, seed=seed)[split])
    return [it for it in items if (it.topic or "unknown") in topics]
