import json

import pytest

from tigerdecode.qa.data import (
    QAFormatError,
    QAItem,
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
    (json.dumps({"prompt": "q", "answers": ["a"], "extra": 1}), "unknown key"),
])
def test_bad_lines_are_reported_by_number(tmp_path, line, needle):
    good = json.dumps({"prompt": "q", "answers": ["a"]})
    p = write(tmp_path, [good, good, line])
    with pytest.raises(QAFormatError) as e:
        load_qa(p)
    assert f"{p}:3" in str(e.value)
    assert needle in str(e.value)


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
    from tigerdecode.qa.data import dataset_path, load_prompts

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


def test_open_training_prompts_are_not_the_evaluation_prompts():
    from tigerdecode.qa.data import dataset_path, load_prompts

    train = {it.prompt for it in load_prompts(dataset_path("open_prompts_train.jsonl"))}
    held = {it.prompt for it in load_prompts(dataset_path("creative_prompts.jsonl"))}
    assert not train & held
