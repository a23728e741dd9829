"""The ablation tool's pure parts: --set parsing and the abstention-bar table."""

import click
import pytest

from tigerdecode.eval.tune import bars_table, parse_sets


def test_parse_sets_reads_json_values_and_rejects_unknown_fields():
    assert parse_sets(["abstain_at=0.9", "use_abstain=false", "abstain_message=No idea."]) == {
        "abstain_at": 0.9, "use_abstain": False, "abstain_message": "No idea."}
    for bad in (["creativity=0.5"], ["nope=1"], ["abstain_at"]):
        with pytest.raises(click.BadParameter, match="Policy field"):
            parse_sets(bad)


def test_bars_table_counts_kept_and_caught():
    res = {"rows": [{"creativity": 0.0, "variant": "eos_bias", "bars": [
        {"bar": 0.95, "right_kept": 9, "right": 10, "wrong_caught": 30, "wrong": 40}]},
        {"creativity": 0.0, "variant": "abstain"}]}  # abstaining variants have no bar rows
    lines = bars_table(res).splitlines()
    assert len(lines) == 3
    assert lines[2] == "| 0 | eos_bias | 0.95 | 9/10 (90%) | 30/40 (75%) |"
