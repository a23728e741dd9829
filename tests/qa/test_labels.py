"""Labelling rules on hand-made answers (see tigerdecode.qa.labels for the rules)."""

import pytest

from tigerdecode.qa.labels import answer_start, label_answer, normalise, token_pieces


@pytest.mark.parametrize("raw, norm", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  Rzeszów,\tPOLAND! ", "rzeszow poland"),
    ("an apple", "apple"),
    ("1,000,000 people", "1000000 people"),
    ("Twenty-one", "21"),
    ("seven", "7"),
    ("twenty", "20"),
    ("Ｔｏｋｙｏ", "tokyo"),  # full-width unicode
    ("São Paulo", "sao paulo"),
    ("U.S.", "u s"),
])
def test_normalise(raw, norm):
    assert normalise(raw) == norm


CAPITAL = "The capital of Japan is"
ECHO = ["The", " capital", " of", " Japan", " is"]


def test_correct_answer_after_restatement():
    lab = label_answer(CAPITAL, ["Tokyo"], ECHO + [" Tok", "yo", "."], ended_by_eos=True)
    assert lab.correct and lab.span_start == 5
    assert lab.dev == [-1] * 5 + [0, 0, 0]
    assert lab.stop == [0] * 5 + [0, 1, 1]  # stops where "Tokyo" is complete


def test_wrong_answer_deviates_from_first_token_and_stays():
    lab = label_answer(CAPITAL, ["Tokyo"], ECHO + [" Kyoto", ".", " It", " is"], ended_by_eos=False)
    assert not lab.correct
    assert lab.dev == [-1] * 5 + [1, 1, 1, 1]
    assert lab.stop == [0] * 5 + [0, 1, 1, 1]  # the answer sentence ended at "."


def test_deviation_starts_where_the_prefix_is_left():
    pieces = ["New", " York", " City"]
    lab = label_answer("Which city is the largest in the USA?", ["New Jersey", "Newark"], pieces,
                       ended_by_eos=True)
    assert lab.span_start == 0 and lab.dev == [0, 1, 1] and not lab.correct


def test_alias_and_number_forms_are_accepted():
    lab = label_answer("How many legs does a spider have?", ["eight", "8"],
                       ["A", " spider", " has", " 8", " legs", "."], ended_by_eos=True)
    assert lab.correct
    lab = label_answer("How many days are in a week?", ["7"], [" Seven", "."], ended_by_eos=True)
    assert lab.correct and lab.dev == [0, 0] and lab.stop == [1, 1]


def test_answer_word_inside_prompt_is_not_taken_for_restatement():
    pieces = ["The", " capital", " of", " Mexico", " is", " Mexico", " City", "."]
    lab = label_answer("The capital of Mexico is", ["Mexico City"], pieces, ended_by_eos=True)
    assert lab.correct and lab.span_start == 5
    # prompt words out of order start the span ("alternate" comes before "is" in the prompt)
    assert answer_start("The language of Alternate Presidents is", 'The language is "alternate"',
                        ["english"]) == len("The language is ")


def test_word_boundary_needed_for_completion():
    lab = label_answer("Where is the Imperial Palace?", ["Tokyo"], ["Tokyo", "ites", " live"],
                       ended_by_eos=False)
    assert not lab.correct and lab.dev == [0, 1, 1] and lab.stop == [0, 0, 0]


def test_stopping_short_of_the_gold_is_wrong_but_not_deviating():
    lab = label_answer("The language of Kerala is", ["Malayalam"], [" Malay"], ended_by_eos=True)
    assert not lab.correct and lab.dev == [0] and lab.stop == [1]  # EOS after it: stop


def test_empty_span_only_restates():
    lab = label_answer(CAPITAL, ["Tokyo"], ECHO, ended_by_eos=True)
    assert not lab.correct and lab.span_start == 5
    assert lab.dev == [-1] * 5 and lab.stop == [0, 0, 0, 0, 1]


def test_rest_of_span_after_complete_answer_stays_clean():
    lab = label_answer(CAPITAL, ["Tokyo"], ECHO + [" Tokyo", ",", " a", " big", " city"],
                       ended_by_eos=False)
    assert lab.correct and lab.dev[5:] == [0] * 5 and lab.stop[5:] == [1] * 5


def test_unusable_gold_is_an_error():
    with pytest.raises(ValueError, match="no usable gold"):
        label_answer("Q?", ["  ", "?!"], ["x"], ended_by_eos=True)


def test_article_only_gold_keeps_articles():
    lab = label_answer("The blood type of X is", ["A"], [" A", "."], ended_by_eos=True)
    assert lab.correct and lab.dev == [0, 0]
    lab = label_answer("The blood type of X is", ["A"], [" B", "."], ended_by_eos=True)
    assert not lab.correct and lab.dev == [1, 1]


def test_token_pieces_join_to_the_decoded_text(tokenizer):
    ids = tokenizer("The capital of Japan is Tokyo. Łódź, 東京!", add_special_tokens=False)[
        "input_ids"]
    pieces = token_pieces(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("prompt, gold, text", [
    # the question restated in another order before the copula
    ("What is the capital of Poland?", ["Warsaw"], "Poland's capital is Warsaw."),
    ("What is the capital of Denmark?", ["Copenhagen"], "Denmark's capital is Copenhagen."),
    # connectives between the restatement and the answer
    ("Who wrote A Christmas Carol?", ["Charles Dickens", "Dickens"],
     "A Christmas Carol by Charles Dickens."),
    ("Who wrote The Great Gatsby?", ["F. Scott Fitzgerald"], "The Great Gatsby by F. Scott Fitzgerald."),
    ("In which city is Big Ben?", ["London"], "Big Ben is located in London."),
    ("Who wrote Moby-Dick?", ["Herman Melville"], "Moby-Dick was written by Herman Melville."),
])
def test_question_restated_in_another_order_or_joined_by_a_connective_is_right(prompt, gold, text):
    lab = label_answer(prompt, gold, [text], ended_by_eos=True)
    assert lab.correct, (prompt, text)


@pytest.mark.parametrize("prompt, gold, text", [
    ("What is the capital of Poland?", ["Warsaw"], "Poland's capital is Krakow."),
    ("Who wrote A Christmas Carol?", ["Charles Dickens"], "A Christmas Carol by Mark Twain."),
    # after the copula a prompt word is a claim, not a restatement
    ("What is the capital of Poland?", ["Warsaw"], "The capital is Poland, then Warsaw."),
    # a connective does not excuse a different claim before the answer
    ("In which city is Big Ben?", ["London"], "Big Ben is located in the UK's capital, London."),
])
def test_reordering_and_connectives_do_not_excuse_a_wrong_claim(prompt, gold, text):
    lab = label_answer(prompt, gold, [text], ended_by_eos=True)
    assert not lab.correct, (prompt, text)


@pytest.mark.parametrize("prompt, gold, text", [
    # a restatement may change tense or number: compared by a light stem
    ("What instrument did Jimi Hendrix play?", ["guitar"], "Jimi Hendrix played a guitar."),
    ("What sport does Lionel Messi play?", ["football"], "Lionel Messi plays football."),
    ("What language did Victor Hugo write in?", ["French"], "Victor Hugo wrote in French."),
    ("What language did Leo Tolstoy speak?", ["Russian"], "Leo Tolstoy spoke Russian."),
    ("Who composed The Magic Flute?", ["Mozart"], "The Magic Flute was composed by Mozart."),
    # the prompt's lowercase words in another order after the copula (a passive restatement)
    ("Who founded Microsoft?", ["Bill Gates"], "Microsoft was founded by Bill Gates."),
    ("What instrument does Anne-Sophie Mutter play?", ["violin"],
     "The instrument played by Anne-Sophie Mutter is a violin."),
    # a hedge claims nothing
    ("What is steel mainly made of?", ["iron"], "Steel is primarily made of iron and carbon."),
])
def test_restatement_in_another_tense_voice_or_with_a_hedge_is_right(prompt, gold, text):
    lab = label_answer(prompt, gold, [text], ended_by_eos=True)
    assert lab.correct, (prompt, text)


@pytest.mark.parametrize("prompt, gold, text", [
    # a capitalised prompt word after the copula is still a claim, in any tense
    ("Who founded Microsoft?", ["Bill Gates"], "The founder was Microsoft, then Bill Gates."),
    # a word the prompt does not hold, inflected or not, starts the span
    ("What language did Dante write in?", ["Italian"], "Dante's works were written in Italian."),
    ("What instrument did Jimi Hendrix play?", ["guitar"], "Jimi Hendrix played drums."),
])
def test_stemming_does_not_excuse_a_claim(prompt, gold, text):
    lab = label_answer(prompt, gold, [text], ended_by_eos=True)
    assert not lab.correct, (prompt, text)


@pytest.mark.parametrize("word, stemmed", [
    ("played", "play"), ("plays", "play"), ("play", "play"), ("wrote", "writ"),
    ("write", "writ"), ("composed", "compos"), ("compose", "compos"), ("is", "is"),
    ("paris", "pari"), ("used", "used"),
])
def test_stem(word, stemmed):
    from tigerdecode.qa.labels import stem
    assert stem(word) == stemmed
