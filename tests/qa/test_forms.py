"""Prompt forms: every relation of qa_wikidata gets a question and mixed prompts; labels of the
fact slot on hand-made answers."""

from tigerdecode.qa.data import QAItem, load_qa, qa_wikidata_path
from tigerdecode.qa.forms import RELATIONS, form_of, mixed_forms, question_form, with_forms
from tigerdecode.qa.labels import label_answer, label_mixed

JAPAN = QAItem(prompt="The capital of Japan is", answers=["Tokyo"], topic="capital", id="x1")


def test_question_and_mixed_forms_of_one_item():
    q = question_form(JAPAN)
    assert q.prompt == "What is the capital of Japan?" and q.id == "x1#q" and q.topic == "capital"
    ms = mixed_forms(JAPAN)
    assert len(ms) == 3 and all("Japan" in m.prompt and "capital" in m.prompt for m in ms)
    assert [form_of(x) for x in (JAPAN, q, ms[0])] == ["completion", "question", "mixed"]
    assert [x.id for x in with_forms([JAPAN], ("question",))] == ["x1#q"]


def test_every_relation_of_the_dataset_is_covered():
    items = load_qa(qa_wikidata_path())
    assert {it.topic for it in items} == set(RELATIONS)
    by_topic = {}
    for it in items:
        by_topic.setdefault(it.topic, []).append(question_form(it) is not None)
    for topic, ok in by_topic.items():
        # every relation pattern fits most of its items ("country" also holds "country for sport")
        assert sum(ok) / len(ok) >= 0.9, topic
    unknown = QAItem(prompt="Who wrote Hamlet?", answers=["Shakespeare"], topic="books", id="y")
    assert question_form(unknown) is None and mixed_forms(unknown) == []


def test_fact_slot_labels_mark_the_deciding_tokens():
    pieces = ["The", " capital", " of", " Japan", " is", " Tok", "yo", "."]
    lab = label_answer("The capital of Japan is", ["Tokyo"], pieces, True)
    assert lab.correct and lab.slot == [0, 0, 0, 0, 0, 1, 1, 0]
    wrong = label_answer("The capital of Japan is", ["Tokyo"],
                         ["The", " capital", " is", " Ky", "oto", ",", " a", " city"], False)
    assert not wrong.correct and wrong.slot == [0, 0, 0, 1, 0, 0, 0, 0]  # decided at " Ky"


def test_mixed_labels_find_the_named_fact():
    lab = label_mixed(["Tokyo"], ["Oh", " Japan", ",", " land", " of", " Tok", "yo", " bright"])
    assert lab.correct and lab.slot == [0, 0, 0, 0, 0, 1, 1, 0]
    assert set(lab.dev) == {-2} and set(lab.stop) == {-1}
    assert label_mixed(["New York"], ["I", " love", " New", " York", "!"]).slot == [0, 0, 1, 1, 0]
    assert not label_mixed(["Tokyo"], ["Oh", " Kyoto", "!"]).correct
    assert not label_mixed(["York"], ["Yorkshire", " pudding"]).correct  # whole words only
