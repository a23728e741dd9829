"""Trade-off tab data on hand-made result rows: loading, curves, operating points, export."""

import json
import re

import pytest

from tigerdecode.demos import tradeoff
from tigerdecode.settings import load_settings, save_settings

ROWS = [
    {"method": "temperature", "setting": 0.7, "error_rate": 0.5, "abstain_rate": 0.0,
     "precision": 0.5, "distinct_2": 0.6, "self_bleu": 0.3, "tokens_per_s": 12.0},
    {"method": "temperature", "setting": 0.3, "error_rate": 0.4, "abstain_rate": 0.0,
     "precision": 0.6, "distinct_2": 0.4, "self_bleu": 0.4, "tokens_per_s": 12.0},
    {"method": "tigerdecode", "setting": "creativity=0.2", "error_rate": 0.3,
     "abstain_rate": 0.1, "precision": 0.7, "distinct_2": 0.5, "self_bleu": 0.3,
     "tokens_per_s": 11.0},
    {"method": "tigerdecode+judge", "setting": {"creativity": 0.6, "max_rewrites": 2},
     "error_rate": 0.2, "abstain_rate": 0.2, "precision": 0.8, "distinct_2": None,
     "self_bleu": None, "tokens_per_s": 8.0},
]


@pytest.fixture
def results(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"rows": ROWS}))
    return p


def test_load_curves_and_points(results):
    df = tradeoff.load_results(results)
    assert len(df) == 4 and list(df.columns[:8]) == tradeoff.COLUMNS
    curve = tradeoff.curve_table(df)
    assert len(curve) == 3  # the row without distinct_2 has no place on the plot
    assert curve[curve.method == "temperature"].distinct_2.tolist() == [0.4, 0.6]  # sorted on x
    svg = tradeoff.curves_svg(df, chosen="tigerdecode @ creativity=0.2")
    lines = re.findall(r'data-series="([^"]+)"[^>]*points="([^"]*)"', svg)
    assert [(name, len(pts.split())) for name, pts in lines] == [("temperature", 2),
                                                                  ("tigerdecode", 1)]
    assert svg.count('class="td-curves-mark"') == 1 and "chosen: tigerdecode @" in svg
    assert tradeoff.operating_points(df) == ["tigerdecode @ creativity=0.2",
                                             "tigerdecode+judge @ creativity=0.6, max_rewrites=2"]


def test_settings_export_round_trip(results, tmp_path):
    df = tradeoff.load_results(results)
    s = tradeoff.settings_for(df, "tigerdecode+judge @ creativity=0.6, max_rewrites=2")
    assert s.creativity == 0.6 and s.overrides == {"judge": True, "max_rewrites": 2}
    assert s.source["metrics"]["precision"] == 0.8
    assert load_settings(save_settings(s, tmp_path / "s.json")) == s
    assert tradeoff.settings_for(df, "tigerdecode @ creativity=0.2").creativity == 0.2
    assert tradeoff._creativity("c=0.35") == 0.35 and tradeoff._creativity("T=0.7") is None
    with pytest.raises(tradeoff.ResultsError, match="no operating point"):
        tradeoff.settings_for(df, "nope")


@pytest.mark.parametrize("content, words", [
    ("{", "not valid JSON"),
    ('{"data": []}', "'rows'"),
    ('{"rows": [{"setting": 1}]}', "'method'"),
    ('{"rows": [{"method": "x", "error_rate": "high"}]}', "error_rate"),
])
def test_bad_results_files(tmp_path, content, words):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(tradeoff.ResultsError) as e:
        tradeoff.load_results(p)
    assert words in str(e.value)
    with pytest.raises(FileNotFoundError):
        tradeoff.load_results(tmp_path / "absent.json")
