"""QA data: the JSONL format every command takes, the vendored qa_wikidata set, topic splits.

Format, one object a line: ``{"prompt": str, "answers": [str, ...]}`` with optional
``"false_answers": [str]``, ``"id"`` and ``"topic"``. Any other key (a dataset's ``source``,
``category``, ``best_answer``, ...) is kept in ``QAItem.meta``. A file's bad lines are reported
together (the first ``MAX_REPORTED``, then a count); ``skip_bad=True`` loads the good ones and
warns how many were skipped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

MAX_LINE_CHARS = 100_000
MAX_PROMPT_CHARS = 20_000
MAX_REPORTED = 20  # bad lines named in one error; the rest are counted
SPLITS = ("train", "validation", "test")


class QAFormatError(ValueError):
    """A QA file is malformed; the message names the file, the line(s) and the fix.
    ``bad_lines``: the first ``MAX_REPORTED`` bad line numbers; ``n_bad``: how many in all."""

    def __init__(self, message: str, bad_lines: list[int] | None = None, n_bad: int = 0):
        super().__init__(message)
        self.bad_lines = bad_lines or []
        self.n_bad = n_bad


class BadLinesSkipped(UserWarning):
    """``skip_bad=True`` left some lines of a file out; the message says how many and which."""


@dataclass
class QAItem:
    prompt: str
    answers: list[str]
    false_answers: list[str] = field(default_factory=list)
    id: str | None = None
    topic: str | None = None
    meta: dict = field(default_factory=dict)  # the line's other keys, as given

    def to_dict(self) -> dict:
        d = {"prompt": self.prompt, "answers": self.answers}
        if self.false_answers:
            d["false_answers"] = self.false_answers
        if self.id is not None:
            d["id"] = self.id
        if self.topic is not None:
            d["topic"] = self.topic
        if self.meta:  # only when present, so digests of items without extras do not change
            d["meta"] = self.meta
        return d


_FIELDS = {"prompt", "answers", "false_answers", "id", "topic"}
# What other datasets call the required keys; a line that lacks a required key but has one of
# these (or a close spelling) is an error that names the rename, not a silent miss.
_ALIASES = {"prompt": ("question", "query", "input", "Question", "Prompt"),
            "answers": ("answer", "correct_answers", "gold_answers", "targets", "target",
                        "Answers", "Answer")}


def _rename_hint(obj: dict, key: str) -> str:
    """For a line without ``key``: "; found 'answer' instead: rename it ..." when it has an
    alias or a close spelling of it, else ""."""
    others = [k for k in obj if k not in _FIELDS]
    found = [k for k in _ALIASES.get(key, ()) if k in obj]
    near = (found or difflib.get_close_matches(key, others, n=1, cutoff=0.75) or [None])[0]
    if near is None:
        return ""
    v = obj[near]
    example = json.dumps(v if key != "answers" or isinstance(v, list) else [v],
                         ensure_ascii=False)
    return f'; found {near!r} instead: rename it to {key!r}, e.g. "{key}": {example[:80]}'


def _str_list(obj, key: str, where: str, required: bool) -> list[str]:
    if key not in obj:
        if required:
            raise QAFormatError(f"{where}: missing required key {key!r} (a list of strings)"
                                + _rename_hint(obj, key))
        return []
    v = obj[key]
    if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
        got = f"{v!r:.80}"
        if isinstance(v, str):
            got = f"a single string {v!r:.80}; write it as a list: {json.dumps([v])[:80]}"
        elif isinstance(v, list) and v and all(isinstance(a, int | float) for a in v):
            got += f"; write numbers as strings: {json.dumps([str(a) for a in v])[:80]}"
        raise QAFormatError(f"{where}: {key!r} must be a list of strings, got {got}")
    if required and not any(a.strip() for a in v):
        raise QAFormatError(f"{where}: {key!r} must hold at least one non-empty string")
    return v


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise _DuplicateKey(k)
        seen.add(k)
    return dict(pairs)


def _json_object(line: str, where: str) -> dict:
    """One JSONL line as a dict, bounded in size; anything else is a QAFormatError."""
    if len(line) > MAX_LINE_CHARS:
        raise QAFormatError(f"{where}: line is {len(line)} characters; at most {MAX_LINE_CHARS}")
    try:
        obj = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise QAFormatError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    except _DuplicateKey as e:
        raise QAFormatError(f"{where}: key {e.args[0]!r} appears more than once; keep one") \
            from None
    except RecursionError:
        raise QAFormatError(f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise QAFormatError(f"{where}: not usable JSON ({e})") from None
    if not isinstance(obj, dict):
        raise QAFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "\\u" in line and not _encodable(obj):
        raise QAFormatError(f"{where}: holds a lone surrogate escape (e.g. \"\\ud800\"), "
                            "which is not a character; expected valid Unicode text")
    return obj


def _encodable(obj) -> bool:
    """Whether every string in a parsed line is valid Unicode (JSON's ``\\ud800`` escape gives
    a lone surrogate that no tokenizer or UTF-8 file can take)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _prompt(obj: dict, where: str, expected: str = "'prompt' must be a non-empty string") -> str:
    if "prompt" not in obj:
        raise QAFormatError(f"{where}: {expected}, but the line has no 'prompt' key"
                            + _rename_hint(obj, "prompt"))
    prompt = obj["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise QAFormatError(f"{where}: {expected}, got {prompt!r:.80}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise QAFormatError(f"{where}: prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    return prompt


def _meta(obj: dict, known: set[str]) -> dict:
    """The keys the format does not define, kept as given (an explicit ``meta`` object, as
    ``save_qa`` writes it, is merged in)."""
    meta = dict(obj["meta"]) if isinstance(obj.get("meta"), dict) else {}
    meta.update({k: v for k, v in obj.items()
                 if k not in known and not (k == "meta" and isinstance(v, dict))})
    return meta


def parse_qa_line(line: str, where: str) -> QAItem:
    obj = _json_object(line, where)
    prompt = _prompt(obj, where)
    for key in ("id", "topic"):
        if key in obj and not isinstance(obj[key], str | int):
            raise QAFormatError(f"{where}: {key!r} must be a string, got {obj[key]!r:.80}")
    return QAItem(
        prompt=prompt,
        answers=_str_list(obj, "answers", where, required=True),
        false_answers=_str_list(obj, "false_answers", where, required=False),
        id=None if obj.get("id") is None else str(obj["id"]),
        topic=None if obj.get("topic") is None else str(obj["topic"]),
        meta=_meta(obj, _FIELDS),
    )


def parse_prompt_line(line: str, where: str) -> QAItem:
    """One open-prompt line: ``answers=[]``, topic ``"open:<kind>"``, other keys in meta."""
    obj = _json_object(line, where)
    prompt = _prompt(obj, where, "expected an object with a non-empty 'prompt' string")
    return QAItem(prompt=prompt, answers=[],
                  id=None if obj.get("id") is None else str(obj["id"]),
                  topic=f"open:{obj.get('kind') or 'open'}",
                  meta=_meta(obj, {"prompt", "id", "kind"}))


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, None) per line, or (number, None, what is wrong) for a line that is
    too long or not UTF-8. Memory stays bounded whatever the file holds."""
    limit = MAX_LINE_CHARS * 4 + 2  # bytes: a UTF-8 character takes at most four
    with path.open("rb") as fh:
        n = 0
        while raw := fh.readline(limit):
            n += 1
            if len(raw) == limit and not raw.endswith(b"\n"):
                while (rest := fh.readline(limit)) and not rest.endswith(b"\n"):
                    pass
                yield n, None, f"line is longer than {MAX_LINE_CHARS} characters"
                continue
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte-order mark
            try:
                yield n, raw.decode("utf-8"), None
            except UnicodeDecodeError as e:
                yield n, None, f"not valid UTF-8 (byte {e.start + 1}); save the file as UTF-8"


def _read(path: Path, parse: Callable[[str, str], QAItem], limit: int | None,
          skip_bad: bool, empty: str) -> list[QAItem]:
    items: list[QAItem] = []
    first: list[tuple[int, str]] = []  # the first MAX_REPORTED bad lines and their messages
    n_bad = 0
    for n, text, problem in _lines(path):
        if text is not None and not text.strip():
            continue
        try:
            if problem is not None:
                raise QAFormatError(f"{path}:{n}: {problem}")
            items.append(parse(text, f"{path}:{n}"))
        except QAFormatError as e:
            n_bad += 1
            if len(first) < MAX_REPORTED:
                first.append((n, str(e)))
            continue
        if limit is not None and len(items) >= limit:
            break
    if n_bad and (not skip_bad or not items):
        raise _bad_lines_error(path, first, n_bad, len(items), skip_bad)
    if n_bad:
        lines = ", ".join(str(n) for n, _ in first[:5]) + (", ..." if n_bad > 5 else "")
        warnings.warn(f"{path}: skipped {n_bad} bad line{'s' * (n_bad > 1)} (line"
                      f"{'s' * (n_bad > 1)} {lines}); loaded {len(items)} items",
                      BadLinesSkipped, stacklevel=3)
    if not items:
        raise QAFormatError(empty)
    return items


def _bad_lines_error(path, first, n_bad: int, n_good: int, skip_bad: bool) -> QAFormatError:
    if n_bad == 1:
        head = first[0][1]
    else:
        head = (f"{path}: {n_bad} bad lines, {n_good} good"
                + (f"; the first {len(first)}" if n_bad > len(first) else "") + ":\n  "
                + "\n  ".join(m for _, m in first))
        if n_bad > len(first):
            head += f"\n  ... and {n_bad - len(first)} more"
    fix = ("No line is usable; fix the file." if skip_bad else
           f"Fix {'it' if n_bad == 1 else 'them'}, or load only the good lines (skip_bad=True; "
           "--skip-bad on the command line).")
    return QAFormatError(f"{head}\n{fix}", [n for n, _ in first], n_bad)


def load_qa(path: str | Path, limit: int | None = None, skip_bad: bool = False) -> list[QAItem]:
    """Read and validate a QA JSONL file (blank lines skipped, at most ``limit`` items). Bad
    lines raise one ``QAFormatError`` naming each (the first ``MAX_REPORTED``) and what was
    expected; with ``skip_bad`` the good lines are returned and a ``BadLinesSkipped`` warning
    says how many were left out."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(
            f"QA file {path} does not exist; expected a JSONL file with one "
            '{"prompt": ..., "answers": [...]} object a line'
        )
    return _read(path, parse_qa_line, limit, skip_bad,
                 f"QA file {path} holds no items; expected at least one JSON line")


def load_prompts(path: str | Path, limit: int | None = None,
                 skip_bad: bool = False) -> list[QAItem]:
    """Read an open-prompt JSONL file (``{"prompt": str, "id"?: str, "kind"?: str}`` a line:
    creative prompts with no factual answer). Items come back with ``answers=[]``, topic
    ``"open:<kind>"`` and other keys in ``meta``; bad lines as in ``load_qa``."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(f"prompt file {path} does not exist; expected a JSONL file with one "
                            '{"prompt": ...} object a line')
    return _read(path, parse_prompt_line, limit, skip_bad,
                 f"prompt file {path} holds no prompts; expected at least one line")


def save_qa(items: list[QAItem], path: str | Path) -> None:
    """Write items as JSONL atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps(it.to_dict(), ensure_ascii=False) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # an interrupted or failed write leaves nothing behind


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
