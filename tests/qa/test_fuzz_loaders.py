"""Fuzzing the QA and open-prompt loaders: random bytes, BOM, CRLF, huge lines, wrong types,
deep nesting, duplicate keys, empty files. Each input loads or is one ``QAFormatError`` naming
the file; what loads saves and reads back unchanged (nothing half-written)."""

import json
import warnings

from fuzz import fuzz
from hypothesis import given
from hypothesis import strategies as st

from tigerdecode.qa.data import (
    MAX_LINE_CHARS,
    BadLinesSkipped,
    QAFormatError,
    QAItem,
    load_prompts,
    load_qa,
    save_qa,
)

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
KEYS = st.sampled_from(["prompt", "answers", "false_answers", "id", "topic", "meta", "kind",
                        "question", "answer", "Prompt", "source"]) | st.text(max_size=8)
good_line = st.builds(
    lambda p, a, extra: json.dumps({"prompt": p, "answers": a, **extra}),
    st.text(min_size=1, max_size=30).filter(str.strip),
    st.lists(st.text(min_size=1, max_size=10).filter(str.strip), min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["id", "topic", "source", "meta", "kind"]), json_value,
                    max_size=2))
# hand-written JSON text, where json.dumps would never go: duplicate keys, huge numbers,
# escapes of lone surrogates, deep nesting, lines past the length limit
odd_line = st.one_of(
    st.just('{"prompt": "a", "prompt": "b", "answers": ["x"]}'),
    st.just('{"prompt": "q", "answers": ["a"], "n": ' + "9" * 5000 + "}"),
    st.just('{"prompt": "\\ud800", "answers": ["a"]}'),
    st.just('{"prompt": "q", "answers": ["\\udfff"]}'),
    st.just('{"prompt": "q", "answers": ["a"], "x": NaN, "y": -Infinity}'),
    st.integers(1, 5000).map(lambda n: '{"prompt": "q", "answers": ["a"], "x": '
                             + "[" * n + "]" * n + "}"),
    st.just(json.dumps({"prompt": "q" * (MAX_LINE_CHARS + 10), "answers": ["a"]})),
    st.just("x" * (MAX_LINE_CHARS * 4 + 10)),
)
line = st.one_of(good_line, odd_line,
                 st.dictionaries(KEYS, json_value, max_size=5).map(json.dumps),
                 json_value.map(json.dumps), st.text(max_size=40), st.just(""))


@st.composite
def file_bytes(draw):
    """A whole file: random bytes, or lines joined by LF or CRLF, maybe after a BOM, maybe
    with random bytes spliced in."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    lines = draw(st.lists(line, max_size=6))
    data = draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


def _check(load, path, skip_bad):
    """Load ``path``: a list of well-formed items, or a QAFormatError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadLinesSkipped)
            items = load(path, skip_bad=skip_bad)
    except QAFormatError as e:
        assert str(path) in str(e) and str(e).strip()
        return None
    assert items and all(isinstance(it, QAItem) for it in items)
    for it in items:
        assert isinstance(it.prompt, str) and it.prompt.strip()
        assert all(isinstance(a, str) for a in it.answers + it.false_answers)
        assert isinstance(it.meta, dict)
    return items


@fuzz(40)
@given(data=file_bytes(), skip_bad=st.booleans())
def test_qa_files_load_or_fail_with_a_named_error(tmp_path, data, skip_bad):
    path = tmp_path / "qa.jsonl"
    path.write_bytes(data)
    items = _check(load_qa, path, skip_bad)
    if items is not None:  # whatever loads writes back and reads back the same
        out = tmp_path / "out.jsonl"
        save_qa(items, out)
        assert load_qa(out) == items
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "qa.jsonl"]


@fuzz(40)
@given(data=file_bytes(), skip_bad=st.booleans())
def test_prompt_files_load_or_fail_with_a_named_error(tmp_path, data, skip_bad):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(data)
    items = _check(load_prompts, path, skip_bad)
    if items is not None:
        assert all(it.answers == [] and it.topic.startswith("open:") for it in items)


def test_the_odd_lines_each_name_their_problem(tmp_path):
    cases = {'{"prompt": "a", "prompt": "b", "answers": ["x"]}': "more than once",
             '{"prompt": "q", "answers": ["a"], "n": ' + "9" * 5000 + "}": "digits",
             '{"prompt": "\\ud800", "answers": ["a"]}': "surrogate",
             '{"prompt": "q", "answers": ["a"], "x": ' + "[" * 5000 + "]" * 5000 + "}":
                 "nested too deeply",
             "": "holds no items", "\r\n\r\n": "holds no items",
             "\ufeff\n": "holds no items"}
    for text, words in cases.items():
        path = tmp_path / "qa.jsonl"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_qa(path)
        except QAFormatError as e:
            assert words in str(e), (text[:60], str(e))
        else:
            raise AssertionError(f"{text[:60]!r} loaded")


def test_bom_and_crlf_are_read_as_plain_lines(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "q", "answers": ["a"]}\r\n'
                     b'{"prompt": "r", "answers": ["b"]}\r\n')
    assert [(it.prompt, it.answers) for it in load_qa(path)] == [("q", ["a"]), ("r", ["b"])]
