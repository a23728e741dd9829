"""Consensus between samples: which of several texts for one request agree on the names they
use (training-free, text only).

A small model asked for creative text that must name a fact ("a two-line poem about X that names
its capital") names it in some samples and not in others, and its wrong names scatter while
the one it knows recurs. :func:`consensus_order` ranks samples by how many of their names the
other samples also use: the self-consistency idea (Wang et al., 2023, "Self-Consistency
Improves Chain of Thought Reasoning in Language Models") applied to the names inside free
text, as a minimum-Bayes-risk choice with names as the utility.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w[\w'’\-]*")
_WORD = re.compile(r"\w+")
_POSSESSIVE = re.compile(r"['’]s?$")  # "Kyoto's", "Paris'": the name is what comes before
# capitalised words that start sentences rather than name anything
_COMMON = frozenset(
    "a an the in on at by with where when while this that these those as from for its it his "
    "her their our my your we i you he she they and but or of to if so then there here what "
    "who which how why once amid among beneath under over through into upon".split())


def names(text: str, prompt: str = "") -> frozenset[str]:
    """The names a text uses: its capitalised words, lower-cased, with the words the prompt
    already holds and sentence-opening function words left out (word by word, so that "Paris"
    and "Paris, France" share a name; a possessive's "'s" and one-letter pieces such as the "O"
    of "O'Brien" are not names)."""
    known = {w.lower() for w in _WORD.findall(prompt)}
    out = set()
    for m in _TOKEN.finditer(text):
        w = m.group(0)
        if w[0].isupper():
            out.update(x for x in _WORD.findall(_POSSESSIVE.sub("", w.lower()))
                       if len(x) > 1 and x not in known and x not in _COMMON)
    return frozenset(out)


def consensus_scores(prompt: str, texts: list[str]) -> list[float]:
    """Per text: the number of other texts sharing each of its names, summed over its names."""
    sets = [names(t, prompt) for t in texts]
    counts: dict[str, int] = {}
    for s in sets:
        for n in s:
            counts[n] = counts.get(n, 0) + 1
    return [float(sum(counts[n] - 1 for n in s)) for s in sets]


def consensus_order(prompt: str, texts: list[str]) -> list[int]:
    """Indices of ``texts`` from the most to the least agreed-with (ties keep their order)."""
    scores = consensus_scores(prompt, texts)
    return sorted(range(len(texts)), key=lambda i: -scores[i])
