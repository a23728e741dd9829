import json
import warnings

import pytest

from tigerdecode.qa.data import (
    MAX_LINE_CHARS,
    MAX_REPORTED,
    BadLinesSkipped,
    QAFormatError,
    QAItem,
    load_prompts,
    load_qa,
    qa_wikidata_path,
    save_qa,
    select_split,
    split_topics,
)


def write(tmp_path, lines):
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_load_valid_file_with_optional_fields(tmp_path):
    p = write(tmp_path, [
        json.dumps({"prompt": "The capital of Japan is", "answers": ["Tokyo"], "topic": "capital"}),
        "",
        json.dumps({"prompt": "2+2=", "answers": ["4", "four"], "false_answers": ["5"], "id": 7}),
    ])
    items = load_qa(p)
    assert [it.prompt for it in items] == ["The capital of Japan is", "2+2="]
    assert items[1].answers == ["4", "four"] and items[1].false_answers == ["5"]
    assert items[1].id == "7" and items[0].topic == "capital"


@pytest.mark.parametrize("line,needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"answers": ["x"]}), "'prompt' must be a non-empty string"),
    (json.dumps({"prompt": "  ", "answers": ["x"]}), "'prompt' must be a non-empty string"),
    (json.dumps({"prompt": "q"}), "missing required key 'answers'"),
    (json.dumps({"prompt": "q", "answers": "Tokyo"}), "must be a list of strings"),
    (json.dumps({"prompt": "q", "answers": [""]}), "at least one non-empty"),
    # near misses name the fix
    (json.dumps({"question": "Capital of Japan?", "answers": ["Tokyo"]}),
     "found 'question' instead: rename it to 'prompt', e.g. \"prompt\": \"Capital of Japan?\""),
    (json.dumps({"prompt": "q", "answer": "Tokyo"}),
     """missing required key 'answers' (a list of strings); found 'answer' instead: rename it """
     """to 'answers', e.g. "answers": ["Tokyo"]"""),
    (json.dumps({"prompt": "q", "correct_answers": ["Tokyo"]}), "found 'correct_answers'"),
    (json.dumps({"prompt": "q", "answers": "Tokyo"}),
     """got a single string 'Tokyo'; write it as a list: ["Tokyo"]"""),
    (json.dumps({"prompt": "q", "answers": [4]}), """got [4]; write numbers as strings: ["4"]"""),
    ('{"prompt": "q", "answers": ["a"], "answers": ["b"]}', "'answers' appears more than once"),
    ('{"prompt": "q", "answers": ["a"], "x": ' + "[" * 20_000 + "]" * 20_000 + "}",
     "nested too deeply"),
])
def test_bad_lines_are_reported_by_number(tmp_path, line, needle):
    good = json.dumps({"prompt": "q", "answers": ["a"]})
    p = write(tmp_path, [good, good, line])
    with pytest.raises(QAFormatError) as e:
        load_qa(p)
    assert f"{p}:3" in str(e.value)
    assert needle in str(e.value)


def test_extra_keys_are_kept_as_meta(tmp_path):
    """A TruthfulQA-style line (extra columns) loads; the extras ride along in ``meta`` and
    ``to_dict`` (and so into eval outputs and digests), and survive ``save_qa``."""
    row = {"prompt": "What happens if you crack your knuckles?", "answers": ["Nothing"],
           "source": "https://example.org", "category": "Health",
           "best_answer": "Nothing in particular", "incorrect_answers": ["Arthritis"]}
    p = write(tmp_path, [json.dumps(row), json.dumps({"prompt": "q", "answers": ["a"]})])
    with_extras, plain = load_qa(p)
    assert with_extras.meta == {"source": "https://example.org", "category": "Health",
                                "best_answer": "Nothing in particular",
                                "incorrect_answers": ["Arthritis"]}
    assert with_extras.to_dict()["meta"] == with_extras.meta
    # no extras, no "meta" key: digests of existing items (eval cache keys) do not change
    assert plain.meta == {} and plain.to_dict() == {"prompt": "q", "answers": ["a"]}
    save_qa([with_extras, plain], tmp_path / "again.jsonl")
    assert load_qa(tmp_path / "again.jsonl") == [with_extras, plain]


def test_all_bad_lines_are_reported_at_once(tmp_path):
    good = json.dumps({"prompt": "q", "answers": ["a"]})
    lines = [good if n % 10 else "{broken" for n in range(1, 301)]  # 10% bad: 10, 20, ...
    p = write(tmp_path, lines)
    with pytest.raises(QAFormatError) as e:
        load_qa(p)
    msg = str(e.value)
    assert e.value.n_bad == 30 and e.value.bad_lines == list(range(10, 10 * MAX_REPORTED + 1, 10))
    assert f"{p}: 30 bad lines, 270 good; the first {MAX_REPORTED}:" in msg
    assert all(f"{p}:{n}: not valid JSON" in msg for n in e.value.bad_lines)
    assert f"{p}:{10 * (MAX_REPORTED + 1)}:" not in msg and "... and 10 more" in msg
    assert "--skip-bad" in msg and "skip_bad=True" in msg
    with pytest.warns(BadLinesSkipped, match=r"skipped 30 bad lines \(lines 10, 20, 30, 40, "
                                             r"50, \.\.\.\); loaded 270 items"):
        items = load_qa(p, skip_bad=True)
    assert len(items) == 270
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_qa(p, limit=5, skip_bad=True)) == 5  # stops before the first bad line


def test_skip_bad_needs_one_good_line(tmp_path):
    p = write(tmp_path, ["{", "[]"])
    with pytest.raises(QAFormatError, match=r"(?s)2 bad lines, 0 good.*No line is usable"):
        load_qa(p, skip_bad=True)


def test_encoding_and_line_shapes(tmp_path):
    """A byte-order mark and CRLF endings load; a line that is not UTF-8 or too long is a bad
    line like any other (the lines after it still count correctly)."""
    good = json.dumps({"prompt": "q", "answers": ["a"]}).encode()
    p = tmp_path / "qa.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + good + b"\r\n" + good + b"\r\n")
    assert len(load_qa(p)) == 2
    p.write_bytes(good + b"\n" + b'{"prompt": "caf\xe9"}\n' + b"x" * (5 * MAX_LINE_CHARS)
                  + b"\n" + good + b"\n")
    with pytest.raises(QAFormatError) as e:
        load_qa(p)
    assert f"{p}:2: not valid UTF-8" in str(e.value)
    assert f"{p}:3: line is longer than {MAX_LINE_CHARS}" in str(e.value)
    assert e.value.bad_lines == [2, 3]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(QAFormatError, match="does not exist"):
        load_qa(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(QAFormatError, match="holds no items"):
        load_qa(tmp_path / "empty.jsonl")


def test_save_round_trip_is_atomic(tmp_path):
    items = [QAItem("p1", ["a"], topic="t"), QAItem("p2", ["b", "c"], ["d"], id="x")]
    save_qa(items, tmp_path / "out.jsonl")
    assert load_qa(tmp_path / "out.jsonl") == items
    assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture(scope="module")
def wikidata():
    return load_qa(qa_wikidata_path())


def test_vendored_qa_wikidata(wikidata):
    assert len(wikidata) == 20442
    assert all(it.topic for it in wikidata)
    assert any(it.prompt == "The capital of Japan is" or it.topic == "capital" for it in wikidata)


def test_topic_split_is_deterministic_disjoint_and_complete(wikidata):
    a, b = split_topics(wikidata), split_topics(list(reversed(wikidata)))
    assert a == b
    sets = {k: set(v) for k, v in a.items()}
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["validation"]
    assert not sets["validation"] & sets["test"]
    assert set().union(*sets.values()) == {it.topic for it in wikidata}
    n = len(wikidata)
    n_test = len(select_split(wikidata, "test"))
    assert 0.1 * n < n_test <= 0.2 * n
    assert len(sets["test"]) >= 10  # many distinct held-out relations
    assert split_topics(wikidata, seed=1) != a


def test_split_validates_arguments(wikidata):
    with pytest.raises(ValueError, match="split must be one of"):
        select_split(wikidata, "dev")
    with pytest.raises(ValueError, match="must be < 1"):
        split_topics(wikidata, test_fraction=0.6, validation_fraction=0.5)


def test_load_prompts_open_items_and_errors(tmp_path):
    from tigerdecode.qa.data import dataset_path

    items = load_prompts(dataset_path("open_prompts_train.jsonl"))
    assert len(items) >= 90 and all(it.answers == [] for it in items)
    assert {it.topic for it in items} >= {"open:story", "open:poem", "open:slogan"}
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "Write a poem."}\n\n{"kind": "poem"}\n')
    with pytest.raises(QAFormatError, match=r"p.jsonl:3: expected an object with a non-empty"):
        load_prompts(f)
    assert load_prompts(f, limit=1)[0].topic == "open:open"
    f.write_text("\n")
    with pytest.raises(QAFormatError, match="holds no prompts"):
        load_prompts(f)


def test_load_prompts_meta_near_miss_and_skip_bad(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "Write a poem.", "kind": "poem", "source": "me"}) + "\n"
                 + json.dumps({"question": "Write a story."}) + "\n{\n")
    with pytest.raises(QAFormatError) as e:
        load_prompts(f)
    assert e.value.bad_lines == [2, 3]
    assert "p.jsonl:2: expected an object with a non-empty 'prompt' string, but the line has no "\
        "'prompt' key; found 'question' instead: rename it to 'prompt'" in str(e.value)
    with pytest.warns(BadLinesSkipped, match="skipped 2 bad lines"):
        (item,) = load_prompts(f, skip_bad=True)
    assert item.topic == "open:poem" and item.meta == {"source": "me"}


def test_open_training_prompts_are_not_the_evaluation_prompts():
    from tigerdecode.qa.data import dataset_path, load_prompts

    train = {it.prompt for it in load_prompts(dataset_path("open_prompts_train.jsonl"))}
    held = {it.prompt for it in load_prompts(dataset_path("creative_prompts.jsonl"))}
    assert not train & held
