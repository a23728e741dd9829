"""Labelling the model's own answers: correctness, per-token deviation and per-token stop.

The rules (tested on hand-made cases in tests/training/test_labels.py):

- **Normalisation** (both gold and generated text): unicode NFKD with accents dropped, casefold,
  thousands separators removed (``1,000`` -> ``1000``), punctuation -> space, the articles
  *a / an / the* dropped (kept when every gold answer is only an article, e.g. blood type
  "A"), number words -> digits (``twenty-one`` -> ``21``), whitespace collapsed.
- **Answer span**: the model often restates the prompt first ("The capital of Japan is Tokyo.",
  "Poland's capital is Warsaw.", "A Christmas Carol by Charles Dickens."). The span starts at the
  first word that is not part of that restatement: words are skipped while each one occurs in the
  prompt *later than the previous skipped word* (prompt order; dropping prompt words is allowed),
  is a filler such as *is / are / has / does / answer*, a connective such as *by / in / located
  / written* or a hedge such as *mainly / primarily / traditionally* (a filler that also occurs
  later in the prompt moves the position on), is one of the prompt's lowercase words (its verbs
  and common nouns, in any order: "Who founded X?" -> "X was founded by ..."), or, before the
  first copula (*is / are / was / were*), occurs anywhere in the prompt (a question restated in
  another order: "Poland's capital"); never past a point where a gold answer starts. Words are
  compared by a light stem, so a restatement may change tense or number ("What instrument did X
  play?" -> "X played the guitar", "wrote" for "write"). After the copula a capitalised prompt
  word out of order is a claim ("The language is Alternate", "The capital is Poland"). Everything
  from there to the end of the generation is the span.
- **Deviation** (``dev``): inside the span, 0 while the normalised span text so far is a prefix of
  some normalised gold answer, 1 from the first token where it is a prefix of none, and 1 for the
  rest of the span. Once a gold answer is complete (followed by a word boundary) the fact slot is
  filled correctly and the rest of the span stays 0 (later text is not checked against gold).
  **Outside the span** (the restatement before it) ``dev`` is ``-1``: undefined, excluded from the
  dev loss and from every dev metric, because repeating the question makes no claim.
- **Open text** (the answer to a creative prompt, from ``data build --open``): ``dev`` is
  ``OPEN_TEXT`` (-2) on every token: there is no fact to depart from. It is excluded from every
  dev metric; ``heads train`` uses those tokens (and the restatement's) as negatives, so that
  ``p_dev`` stays low where nothing factual is being claimed. ``stop`` is -1 there (undefined).
- **Stop** (``stop``): 0 before the answer is complete, 1 from the first token where it is: a gold
  answer has been fully given, or the answer sentence has finished (``.``/``!``/``?`` followed by
  whitespace or the end, or a newline, inside the span), or the token is the last one before the
  model's own end-of-sequence (even when the span is empty). Other restatement tokens are 0.
- **Fact slot** (``slot``, the forward-looking label): 1 on the span's tokens that decide the
  answer, from its first content token (a letter or digit) through the token where it becomes
  complete or deviates; 0 elsewhere (restatement, filler, text after the decision, open text).
  A head reading the state *before* token t is drawn learns ``slot[t]``: where sampling instead
  of taking the argmax can make the answer wrong.
- **Mixed answers** (a creative text that must name the fact, :func:`label_mixed`): correct when
  a gold answer is named anywhere (word-bounded); ``slot`` is 1 on the tokens that write it;
  ``dev`` is ``OPEN_TEXT`` and ``stop`` -1 (the text around the fact claims nothing).
- **Correct**: a gold answer is completed before any deviation. An answer that ends while still on
  a gold prefix (e.g. "Malay" for "Malayalam") or has an empty span is wrong.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

ARTICLES = frozenset({"a", "an", "the"})
FILLER = frozenset({"is", "are", "was", "were", "be", "has", "have", "had", "does", "do", "did",
                    "answer", "it", "its", "of", "s"})
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
# connectives between a restated question and its answer ("... by Charles Dickens", "is located in")
CONNECTIVES = frozenset({"by", "in", "on", "at", "from", "located", "situated", "written",
                         "called", "named", "known", "as"})
COPULAS = frozenset({"is", "are", "was", "were"})
# adverbs that hedge or frame a restated question without claiming anything ("Steel is
# primarily made of iron", "Wine is traditionally made from grapes")
HEDGES = frozenset({"primarily", "mainly", "mostly", "chiefly", "largely", "typically",
                    "usually", "generally", "commonly", "traditionally", "originally", "also",
                    "actually", "widely", "often", "best"})
# forms whose stem is not the present's ("wrote" for "write"): a restatement may change tense
_IRREGULAR = {"wrote": "write", "written": "write", "spoke": "speak", "spoken": "speak",
              "sang": "sing", "sung": "sing", "made": "make", "began": "begin", "begun": "begin",
              "built": "build", "drew": "draw", "drawn": "draw", "taught": "teach", "won": "win",
              "held": "hold", "led": "lead", "ran": "run", "grew": "grow", "grown": "grow",
              "knew": "know", "known": "know", "came": "come", "became": "become",
              "gave": "give", "given": "give", "took": "take", "taken": "take", "sold": "sell",
              "chose": "choose", "chosen": "choose", "fought": "fight", "bought": "buy",
              "thought": "think", "flew": "fly", "flown": "fly", "wore": "wear", "worn": "wear",
              "rode": "ride", "ridden": "ride", "does": "do", "did": "do", "has": "have",
              "had": "have"}
NUMBER_WORDS = {w: str(i) for i, w in enumerate(_UNITS)} | {
    w: str(20 + 10 * i) for i, w in enumerate(_TENS)}
OPEN_TEXT = -2  # dev label of every token of an answer to an open (creative) prompt
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def normalise(text: str, articles: bool = True) -> str:
    """Canonical form for comparing answers (see the module docstring). ``articles=False``
    keeps *a / an / the*, for gold answers that are nothing but one (blood type "A")."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"(?<=\d)[,_ ](?=\d{3}(?!\d))", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if not (articles and w in ARTICLES)]
    out: list[str] = []
    for w in words:  # "twenty one" (from "twenty-one") -> "21"
        if (out and len(w) == 1 and w.isdigit() and w != "0" and len(out[-1]) == 2
                and out[-1].endswith("0") and out[-1] in NUMBER_WORDS.values()):
            out[-1] = out[-1][0] + w
        else:
            out.append(w)
    return " ".join(out)


@dataclass
class AnswerLabels:
    """Labels of one generated answer, one entry per token."""

    correct: bool
    span_start: int  # index of the first token inside the answer span (== n_tokens if empty)
    dev: list[int]  # -1 outside the span, else 0/1
    stop: list[int]  # 0/1
    slot: list[int] = field(default_factory=list)  # 0/1: the tokens that decide the answer


def _complete(s: str, golds: list[str]) -> bool:
    return any(s == g or s.startswith(g + " ") for g in golds)


def _on_prefix(s: str, golds: list[str]) -> bool:
    return any(g.startswith(s) for g in golds)


def stem(word: str) -> str:
    """A light stem for matching a restated word to the prompt's: an irregular form to the
    present, then one of *-ing / -ed / -es / -s* and a final *-e* dropped while at least three
    letters stay ("played", "plays" -> "play"; "composed", "compose" -> "compos")."""
    w = _IRREGULAR.get(word, word)
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[:-len(suffix)]
            break
    return w[:-1] if w.endswith("e") and len(w) > 3 else w


def answer_start(prompt: str, text: str, golds: list[str], norm=normalise) -> int:
    """Character offset where the answer span begins (after a restatement of the prompt)."""
    prompt_words = [stem(w) for w in norm(prompt).split()]
    in_prompt = set(prompt_words)
    # the prompt's own lowercase words (its verbs and common nouns, not a name it asks about)
    # may come back in any order, after the copula too: "Who founded X?" -> "X was founded by"
    lowercase = {stem(w) for m in re.finditer(r"\S+", prompt) if m.group()[:1].islower()
                 for w in norm(m.group()).split()}
    at = -1  # after the copula, other restated words must follow the prompt's word order
    copula = False
    for m in re.finditer(r"\S+", text):
        rest = norm(text[m.start():])
        if rest and _complete(rest, golds):
            return m.start()
        for w in norm(m.group()).split():
            s = stem(w)
            nxt = next((i for i in range(at + 1, len(prompt_words)) if prompt_words[i] == s),
                       None)
            if nxt is not None:
                at = nxt
            elif w in FILLER or w in CONNECTIVES or w in HEDGES or s in lowercase:
                pass
            elif copula or s not in in_prompt:
                return m.start()
            copula = copula or w in COPULAS
    return len(text)


def label_answer(prompt: str, answers: list[str], pieces: list[str],
                 ended_by_eos: bool) -> AnswerLabels:
    """Label an answer given as its token pieces (``"".join(pieces)`` is the generated text)."""
    articles = any(normalise(a) for a in answers)
    norm = (lambda x: normalise(x, articles)) if not articles else normalise
    golds = [g for g in (norm(a) for a in answers) if g]
    if not golds:
        raise ValueError(f"no usable gold answer among {answers!r} (all empty after normalising)")
    text = "".join(pieces)
    ends, pos = [], 0
    for p in pieces:
        pos += len(p)
        ends.append(pos)
    start = answer_start(prompt, text, golds, norm)
    n = len(pieces)
    span_start = next((t for t in range(n) if ends[t] > start), n)
    dev = [-1] * n
    stop = [0] * n
    slot = [0] * n
    state = "open"  # open -> complete | deviated
    stopped = False
    if ended_by_eos and 0 < n <= span_start:
        stop[n - 1] = 1  # the model ended without an answer span: its last token still stops
    for t in range(span_start, n):
        s = norm(text[start:ends[t]])
        boundary = ends[t] >= len(text) or not text[ends[t]].isalnum()
        if state == "open":
            deciding = bool(s) or any(ch.isalnum() for ch in pieces[t])
            if boundary and s and _complete(s, golds):
                state = "complete"
            elif not _on_prefix(s, golds) and not (s and _complete(s, golds)):
                state = "deviated"
            slot[t] = int(deciding and any(ch.isalnum() for ch in pieces[t]))
        dev[t] = 1 if state == "deviated" else 0
        sentence_done = bool(_SENTENCE_END.search(text[start:ends[t]])) and bool(s)
        last_before_eos = ended_by_eos and t == n - 1
        stopped = stopped or state == "complete" or sentence_done or last_before_eos
        stop[t] = int(stopped)
    return AnswerLabels(correct=state == "complete", span_start=span_start, dev=dev, stop=stop,
                        slot=slot)


def label_mixed(answers: list[str], pieces: list[str]) -> AnswerLabels:
    """Label a creative text that must name a fact (a mixed prompt's answer): correct when a
    gold answer occurs in it as whole words; ``slot`` 1 on the tokens that write the first one."""
    articles = any(normalise(a) for a in answers)
    golds = [g for g in (normalise(a, articles) for a in answers) if g]
    if not golds:
        raise ValueError(f"no usable gold answer among {answers!r} (all empty after normalising)")
    n = len(pieces)
    slot = [0] * n
    starts, pos = [], 0
    for p in pieces:
        starts.append(pos)
        pos += len(p)
    text = "".join(pieces)
    found = None
    for m in re.finditer(r"\w[\w'’.-]*", text):  # candidate word starts, left to right
        rest = normalise(text[m.start():], articles)
        g = next((g for g in golds if rest == g or rest.startswith(g + " ")), None)
        if g is not None:
            found = (m.start(), g)
            break
    if found is not None:
        start, g = found
        n_words = len(g.split())
        words = list(re.finditer(r"\w[\w'’.-]*", text[start:]))
        end = start + (words[n_words - 1].end() if len(words) >= n_words else len(text) - start)
        for t in range(n):
            if starts[t] < end and starts[t] + len(pieces[t]) > start and \
                    any(ch.isalnum() for ch in pieces[t]):
                slot[t] = 1
    return AnswerLabels(correct=found is not None, span_start=0, dev=[OPEN_TEXT] * n,
                        stop=[-1] * n, slot=slot)


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text, so that the pieces join to ``decode(ids)``.

    A token that ends inside a multi-byte character gets ``""``; the token completing the
    character carries it.
    """
    pieces, emitted = [], ""
    for t in range(len(ids)):
        cur = tokenizer.decode(ids[: t + 1], skip_special_tokens=True)
        if (cur.endswith("\ufffd") and t < len(ids) - 1) or not cur.startswith(emitted):
            pieces.append("")
            continue
        pieces.append(cur[len(emitted):])
        emitted = cur
    full = tokenizer.decode(ids, skip_special_tokens=True)
    if pieces and full.startswith(emitted):
        pieces[-1] += full[len(emitted):]  # whatever an unfinished character left pending
    return pieces
