"""Rendering hand-built results: highlights, the plot table, the judge panel, timings."""

import math
import re

import pytest

from tigerdecode.demos import render
from tigerdecode.result import GenerationResult, JudgeVerdict, TokenTrace


def _result(judge=None):
    trace = [TokenTrace("Paris", 1, p_stop=0.1, p_dev=0.05, temperature=0.2),
             TokenTrace(" is", 2, p_stop=0.3, p_dev=math.nan, temperature=0.4),
             TokenTrace("\n", 3, p_stop=None, p_dev=1.7, temperature=None, rewritten=True)]
    return GenerationResult("Paris is", [1, 2, 3], trace, judge, {"total": 0.5},
                            creativity=0.25, stop_reason="eos")


def test_highlights_clip_and_mark_missing():
    r = _result()
    assert render.highlights(r.trace) == [("Paris", 0.05), (" is", None), ("⏎\n", 1.0)]
    assert render.highlights(r.trace, "p_stop") == [("Paris", 0.1), (" is", 0.3), ("⏎\n", None)]
    with pytest.raises(ValueError, match="p_dev"):
        render.highlights(r.trace, "entropy")


def test_probability_table_long_format():
    df = render.probability_table(_result().trace)
    assert list(df.columns) == ["position", "probability", "signal", "token"]
    assert df[df.signal == "p_dev"].probability.tolist() == [0.05, 1.0]
    assert df[df.signal == "p_stop"].position.tolist() == [1, 2]
    assert render.probability_table([]).empty


def test_summary_and_timings():
    r = _result()
    s = render.summary_markdown(r)
    assert "3 tokens" in s and "`eos`" in s and "p_dev max 1.00" in s and "1 token(s)" in s
    t = render.timings_markdown(r.timings, 3)
    assert t == "**Timings:** total 0.50 · tokens per s 6.00"
    t = render.timings_markdown({"prefill_s": 0.25, "new_tokens": 8, "tokens_per_s": 2.88}, 8)
    assert t == "**Timings:** prefill 0.250 s · new tokens 8 · tokens per s 2.88"
    assert render.timings_markdown({}, 3) == ""
    assert render.matching_temperature(r) == pytest.approx(0.3)
    assert render.matching_temperature(GenerationResult("", [])) == 0.7


def test_judge_panel_diffs_rewrites_against_first_draft():
    assert render.judge_html(None, "x") == ""
    j = JudgeVerdict(0.2, "rewritten", 0.5, [{"text": "Lyon is <b>", "score": 0.9},
                                              {"text": "Paris is <b>", "score": 0.2,
                                               "rewind_at": 0, "creativity": 0.1}])
    h = render.judge_html(j, "Paris is <b>")
    assert "rewritten" in h and "0.200" in h and "threshold 0.500" in h
    assert "rewrite 1 from token 1 · creativity 0.10 · score 0.200" in h
    assert "<del" in h and "Lyon" in h and "<ins" in h and "Paris" in h
    assert "<b>" not in h.replace("<b>Judge:</b>", "")  # model text is escaped
    assert "2 rewrite" not in render.judge_html(JudgeVerdict(0.9, "abstain"), "")


def test_word_diff():
    h = render.word_diff_html("a b c", "a x c")
    assert h == 'a <del style="background:#fdd">b</del> <ins style="background:#dfd">x</ins> c'


def test_answer_trace_leaves_out_the_stopping_eos():
    r = _result()
    r.token_ids = [1, 2]  # the third token was the EOS that stopped it
    assert [t.token for t in render.answer_trace(r)] == ["Paris", " is"]
    r.stop_reason = "max_new_tokens"
    assert len(render.answer_trace(r)) == 3


def test_probability_svg_draws_both_signals():
    svg = render.probability_svg(_result().trace)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    lines = dict(re.findall(r'data-series="([^"]+)"[^>]*points="([^"]*)"', svg))
    dev, stop = lines["p_dev"].split(), lines["p_stop"].split()
    assert len(dev) == 2 and len(stop) == 2  # NaN and None are left out
    # x spans positions 1..3 over the plot width, y spans probability 0..1 (top = 1)
    (x_a, y_a), (x_b, y_b) = (tuple(map(float, p.split(","))) for p in dev)
    assert x_a < x_b and y_b < y_a  # p_dev 1.0 at position 3 is drawn above 0.05 at position 1
    assert "'\\n'" in svg or "&#x27;\\n&#x27;" in svg  # hover text names the token
    assert render.probability_svg([]) == ""
