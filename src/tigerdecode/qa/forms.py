"""Prompt forms of one fact: the completion prompt the dataset holds, the question people type,
and *mixed* prompts: creative requests that must state the fact ("a two-line poem about X that
names its capital").

Every qa_wikidata relation is written as ``PREFIX + subject + SUFFIX`` (e.g. ``"The capital of "
+ "Japan" + " is"``); :data:`RELATIONS` holds that pattern per relation, its question template and
the kind of its answer (a place, a language, a person, a thing), which picks the mixed templates.
Items of other datasets keep their prompt and get no other form (``None``).

The item id of a derived form carries the form: ``<id>#q`` (question), ``<id>#m<k>`` (the k-th
mixed template); the topic (relation) is unchanged, so relation splits keep forms together.
"""

from __future__ import annotations

import re
from dataclasses import replace

from tigerdecode.qa.data import QAItem

FORMS = ("completion", "question", "mixed")

# relation: (prefix, suffix, question template with {s}, answer kind)
RELATIONS: dict[str, tuple[str, str, str, str]] = {
    "genre": ("The genre of ", " is", "What genre is {s} known for?", "thing"),
    "language": ("The language of ", " is", "What language is {s} in?", "language"),
    "country": ("The country of citizenship of ", " is", "Which country is {s} a citizen of?",
                "place"),
    "original broadcaster": ("The original broadcaster of ", " is",
                             "Which network first broadcast {s}?", "thing"),
    "native language": ("The native language of ", " is", "What is the native language of {s}?",
                        "language"),
    "historic county": ("The historic county of ", " is", "Which historic county is {s} in?",
                        "place"),
    "located in": ("", " is located in", "Where is {s} located?", "place"),
    "original country": ("The original country of ", " is", "Which country does {s} come from?",
                         "place"),
    "convicted of": ("", " convicted of", "What was {s} convicted of?", "thing"),
    "military rank": ("The military rank of ", " is", "What military rank did {s} hold?",
                      "thing"),
    "sport played": ("The sport played by ", " is", "What sport does {s} play?", "thing"),
    "instrument": ("The instrument of ", " is", "What instrument does {s} play?", "thing"),
    "religion": ("The religion of ", " is", "What is the religion of {s}?", "thing"),
    "eye color": ("The eye color of ", " is", "What colour are the eyes of {s}?", "thing"),
    "record label": ("The record label of ", " is", "Which record label is {s} signed to?",
                     "thing"),
    "headquarters location": ("The headquarters location of ", " is",
                              "Where are the headquarters of {s}?", "place"),
    "official language": ("The official language of ", " is",
                          "What is the official language of {s}?", "language"),
    "shares a border with": ("", " shares a border with", "What does {s} share a border with?",
                             "place"),
    "team position": ("The team position of ", " is", "What position does {s} play?", "thing"),
    "languages spoken, written or signed": (
        "The languages spoken, written or signed by ", " is", "What language does {s} speak?",
        "language"),
    "capital": ("The capital of ", " is", "What is the capital of {s}?", "place"),
    "language used": ("The language used in ", " is", "What language is used in {s}?",
                      "language"),
    "official religion": ("The official religion of ", " is",
                          "What is the official religion of {s}?", "thing"),
    "place": ("The place of birth of ", " is", "Where was {s} born?", "place"),
    "competition class": ("The competition class of ", " is",
                          "In which weight class does {s} compete?", "thing"),
    "continent": ("The continent of ", " is", "Which continent is {s} on?", "place"),
    "ethnic group": ("The ethnic group of ", " is", "What ethnic group does {s} belong to?",
                     "thing"),
    "given name": ("", " given name", "What is the given name of {s}?", "person"),
    "capital of": ("", " is capital of", "{s} is the capital of which country?", "place"),
    "office held by head": ("The office held by head of government of ", " is",
                            "What is the title of the head of government of {s}?", "thing"),
    "named after": ("", " named after", "What is {s} named after?", "thing"),
    "basic form": ("The basic form of government of ", " is",
                   "What form of government does {s} have?", "thing"),
    "operating system": ("The operating system of ", " is", "What operating system does {s} run?",
                         "thing"),
    "basin country": ("The basin country of ", " is", "Which country borders {s}?", "place"),
    "facet of": ("", " is facet of", "{s} is a facet of what?", "thing"),
    "endemic to": ("", " endemic to", "Where is {s} endemic?", "place"),
    "emergency phone number": ("The emergency phone number of ", " is",
                               "What is the emergency phone number in {s}?", "thing"),
    "noble title": ("The noble title of ", " is", "What noble title did {s} hold?", "thing"),
    "main subject": ("The main subject of ", " is", "What is the main subject of {s}?", "thing"),
    "indigenous to": ("", " is indigenous to", "Where is {s} indigenous to?", "place"),
    "material used": ("The material used in ", " is", "What material was used to build {s}?",
                      "thing"),
    "public holiday": ("The public holiday of ", " is", "What is a public holiday in {s}?",
                       "thing"),
    "blood type": ("The blood type of ", " is", "What is the blood type of {s}?", "thing"),
    "voice type": ("The voice type of ", " is", "What is the voice type of {s}?", "thing"),
    "writing languages": ("", " writing languages", "In what language did {s} write?",
                          "language"),
    "family name": ("The family name of ", " is", "What is the family name of {s}?", "person"),
    "academic degree": ("The academic degree of ", " is", "What academic degree did {s} hold?",
                        "thing"),
    "residence": ("The residence of ", " is", "Where did {s} live?", "place"),
    "work location": ("The work location of ", " is", "Where did {s} work?", "place"),
    "military branch": ("The military branch of ", " is", "Which military branch did {s} serve "
                        "in?", "thing"),
    "influenced by": ("", " influenced by", "Who influenced {s}?", "person"),
    "currency": ("The currency of ", " is", "What is the currency of {s}?", "thing"),
    "publisher": ("The publisher of ", " is", "Who publishes {s}?", "thing"),
    "followed by": ("", " is followed by", "What came after {s}?", "thing"),
    "color": ("The color of ", " is", "What colour is {s}?", "thing"),
    "follows": ("", " follows", "What came before {s}?", "thing"),
    "IUCN conservation status": ("The IUCN conservation status of ", " is",
                                 "What is the IUCN conservation status of {s}?", "thing"),
    "territory claimed by": ("", " is territory claimed by", "Which country claims {s}?",
                             "place"),
    "official color": ("The official color of ", " is", "What is the official colour of {s}?",
                       "thing"),
    "honorific prefix": ("The honorific prefix of ", " is", "What honorific is used before the "
                         "name of {s}?", "thing"),
    "product or material produced": ("The product or material produced of ", " is",
                                     "What does {s} produce?", "thing"),
    "located in or next to body of water": ("", " is located in or next to body of water",
                                            "Which body of water is {s} on?", "place"),
    "replaced by": ("", " replaced by", "What replaced {s}?", "thing"),
    "developer": ("The developer of ", " is", "Who developed {s}?", "thing"),
    "manufacturer": ("The manufacturer of ", " is", "Who manufactured {s}?", "thing"),
    "measured physical quantity": ("The measured physical quantity of ", " is",
                                   "What physical quantity does {s} measure?", "thing"),
    "month": ("The month of the year of ", " is", "In which month is {s}?", "thing"),
    "newspaper format": ("The newspaper format of ", " is", "What format is the newspaper {s}?",
                         "thing"),
    "owned by": ("", " owned by", "Who owns {s}?", "thing"),
    "programming language": ("", " programming language", "What programming language is {s} "
                             "written in?", "thing"),
    "operating area": ("The operating area of ", " is", "Where does {s} operate?", "place"),
    "participant": ("The participant of ", " is", "Which country took part in {s}?", "place"),
    "platform": ("The platform of ", " is", "On which platform was {s} released?", "thing"),
    "calculated from": ("", " calculated from", "What is {s} calculated from?", "thing"),
    "studied by": ("", " is studied by", "Which field studies {s}?", "thing"),
    "practiced by": ("", " practiced by", "Who practises {s}?", "thing"),
    "streak color": ("The streak color of ", " is", "What is the streak colour of {s}?",
                     "thing"),
    "health specialty": ("The health specialty of ", " is",
                         "Which medical specialty treats {s}?", "thing"),
    "used by": ("", " is used by", "Who uses {s}?", "thing"),
}

# relations whose prompts come in more than one pattern: tried in order before RELATIONS' own
ALTERNATES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "country": (("The country of citizenship of ", " is", "Which country is {s} a citizen of?"),
                ("The country for sport of ", " is", "Which country does {s} play for?"),
                ("The country of ", " is", "In which country is {s}?")),
    "place": (("The place of birth of ", " is", "Where was {s} born?"),
              ("The place of publication of ", " is", "Where was {s} published?")),
}

# Mixed prompts: a creative request that must state the fact. {s} subject, {rel} the relation
# in words (e.g. "capital"), {q} the question. Several per answer kind, so that heads and the
# evaluation see more than one wording.
MIXED: dict[str, tuple[str, ...]] = {
    "place": (
        "Write a two-line poem about {s} that names its {rel}.",
        "Write a one-sentence travel story that mentions the {rel} of {s} by name.",
        "Write a catchy slogan for a café that celebrates {s} and names its {rel}.",
    ),
    "language": (
        "Write a two-line poem about {s} that names its {rel}.",
        "Write a one-sentence story in which a traveller in {s} hears its {rel} and names it.",
        "Write a playful slogan for a language school that names the {rel} of {s}.",
    ),
    "person": (
        "Write a two-line poem about {s} that states the {rel}.",
        "Write a one-sentence story that mentions the {rel} of {s}.",
        "Write a short riddle whose answer is the {rel} of {s}, then give the answer.",
    ),
    "thing": (
        "Write a two-line poem about {s} that states its {rel}.",
        "Write a one-sentence story that mentions the {rel} of {s} by name.",
        "Answer in one playful, creative sentence: {q}",
    ),
}

_WORDS = {"place": "place of birth", "country": "country of citizenship", "basic form":
          "form of government", "office held by head": "head of government's title",
          "languages spoken, written or signed": "language", "sport played": "sport",
          "capital of": "country it is the capital of", "shares a border with": "neighbour",
          "located in": "location", "located in or next to body of water": "body of water",
          "month": "month", "follows": "predecessor", "followed by": "successor"}


def _match(item: QAItem) -> tuple[str, str] | None:
    """(subject, question template) of a relation prompt, or None when the item is not of a
    known relation or follows none of its patterns."""
    rel = RELATIONS.get(item.topic or "")
    if rel is None:
        return None
    p = item.prompt.strip()
    for prefix, suffix, template in ALTERNATES.get(item.topic, ()) + ((rel[0], rel[1], rel[2]),):
        if p.startswith(prefix) and p.endswith(suffix) and len(p) > len(prefix) + len(suffix):
            s = p[len(prefix): len(p) - len(suffix)].strip()
            if s:
                return s, template
    return None


def question_form(item: QAItem) -> QAItem | None:
    """The item asked as a question (``"What is the capital of Japan?"``), or None."""
    m = _match(item)
    if m is None:
        return None
    q = m[1].format(s=m[0])
    return replace(item, prompt=q[0].upper() + q[1:], id=f"{item.id}#q")


def mixed_forms(item: QAItem) -> list[QAItem]:
    """The item's mixed prompts (one per template of its answer kind; [] when unknown)."""
    m = _match(item)
    if m is None:
        return []
    s, q = m[0], m[1].format(s=m[0])
    kind = RELATIONS[item.topic][3]
    rel = _WORDS.get(item.topic, item.topic)
    return [replace(item, prompt=t.format(s=s, rel=rel, q=q), id=f"{item.id}#m{k}")
            for k, t in enumerate(MIXED[kind])]


def form_of(item: QAItem) -> str:
    """"completion", "question" or "mixed", read from the id (see the module docstring); a
    prompt ending in "?" counts as a question."""
    iid = item.id or ""
    if re.search(r"#m\d+$", iid):
        return "mixed"
    if iid.endswith("#q") or item.prompt.rstrip().endswith("?"):
        return "question"
    return "completion"


def with_forms(items: list[QAItem], forms=FORMS, *, mixed_per_item: int = 1,
               seed: int = 0) -> list[QAItem]:
    """Each item in each asked form: completion as given, its question, and ``mixed_per_item``
    of its mixed prompts (chosen by a seeded rotation so every template is used)."""
    bad = sorted(set(forms) - set(FORMS))
    if bad:
        raise ValueError(f"unknown prompt form(s) {bad}; choose from {FORMS}")
    out = []
    for n, it in enumerate(items):
        if "completion" in forms:
            out.append(it)
        if "question" in forms:
            q = question_form(it)
            if q is not None:
                out.append(q)
        if "mixed" in forms and mixed_per_item > 0:
            ms = mixed_forms(it)
            for j in range(min(mixed_per_item, len(ms))):
                out.append(ms[(n + seed + j) % len(ms)])
    return out
