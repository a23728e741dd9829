"""The trade-off tab's data: an evaluation run's result JSON (``tigerdecode eval --json``), its
curves, the operating points on the controlled curves, and the settings export.

Results come from the file chosen at launch (``load_results``) or from bytes a user uploaded
(``parse_results``); nothing here takes a path from a client.

The file holds ``{"rows": [{"method", "setting", "error_rate", "abstain_rate", "precision",
"distinct_2", "self_bleu", "tokens_per_s"}, ...]}``. ``setting`` is a number (the creativity for
``tigerdecode*`` methods, the swept parameter for baselines), a string such as ``"c=0.3"``
(what ``tigerdecode eval`` writes) or ``"creativity=0.3"``, or an object such as
``{"creativity": 0.3}``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from tigerdecode.demos.svgchart import Series, line_chart
from tigerdecode.settings import DecodeSettings

COLUMNS = ["method", "setting", "error_rate", "abstain_rate", "precision", "distinct_2",
           "self_bleu", "tokens_per_s"]
METRICS = COLUMNS[2:]
MAX_RESULTS_BYTES = 5_000_000
MAX_ROWS = 5_000


class ResultsError(ValueError):
    """A results file cannot be shown; the message says which part is wrong."""


def default_results_path() -> Path:
    """Where the demo looks when ``--results`` is not given: a results file in the cache, else
    what ``tigerdecode eval`` wrote under ``runs/`` (full run first, then ``--quick``), else the
    project's recorded run (``docs/results/eval-results.json`` in a source checkout); the full
    run's path when none exists, so the
    empty-state message can name it."""
    from tigerdecode.model.load import cache_dir

    candidates = [cache_dir() / "eval" / "results.json",
                  Path("runs/eval-full/results.json"), Path("runs/eval-quick/results.json"),
                  Path(__file__).resolve().parent.parent / "docs" / "results" /
                  "eval-results.json"]
    return next((p for p in candidates if p.is_file()), candidates[1])


def _number(row: dict, key: str, i: int):
    v = row.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ResultsError(f"row {i}: {key!r} must be a finite number or null, got {v!r:.80}")
    return float(v)


def load_results(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read and check the results file chosen at launch into a table with ``COLUMNS`` (plus
    ``label``). ``name`` is how messages refer to the file (default: the path)."""
    p = Path(path)
    name = name or str(p)
    if not p.is_file():
        raise FileNotFoundError(str(p))
    if p.stat().st_size > MAX_RESULTS_BYTES:
        raise ResultsError(f"{name} is larger than {MAX_RESULTS_BYTES} bytes; is it a results "
                           "file?")
    return parse_results(p.read_bytes(), name)


def parse_results(data: bytes | str, name: str = "the results file") -> pd.DataFrame:
    """Check results JSON held in memory (an uploaded file) into a table; see ``load_results``."""
    if len(data) > MAX_RESULTS_BYTES:
        raise ResultsError(f"{name} is larger than {MAX_RESULTS_BYTES} bytes; is it a results "
                           "file?")
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{name} is not valid JSON: {e}") from None
    except RecursionError:
        raise ResultsError(f"{name} is nested too deeply to be a results file") from None
    rows = obj.get("rows") if isinstance(obj, dict) else None
    if not isinstance(rows, list):
        raise ResultsError(f'{name} must hold {{"rows": [...]}} as written by `tigerdecode eval '
                           f"--json`; found no 'rows' list")
    if len(rows) > MAX_ROWS:
        raise ResultsError(f"{name} has {len(rows)} rows; at most {MAX_ROWS} are shown")
    table = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("method"), str):
            raise ResultsError(f"row {i} must be an object with a 'method' string, got "
                               f"{row!r:.120}")
        rec = {"method": row["method"], "setting": row.get("setting")}
        rec.update({k: _number(row, k, i) for k in METRICS})
        rec["label"] = f"{row['method']} @ {_setting_text(row.get('setting'))}"
        table.append(rec)
    return pd.DataFrame(table, columns=COLUMNS + ["label"])


def _setting_text(setting) -> str:
    if isinstance(setting, dict):
        return ", ".join(f"{k}={v}" for k, v in setting.items())
    return str(setting)


def curve_table(df: pd.DataFrame, x: str = "distinct_2", y: str = "error_rate") -> pd.DataFrame:
    """Rows that have both coordinates, sorted along x within each method (one line each)."""
    return df.dropna(subset=[x, y]).sort_values(["method", x]).reset_index(drop=True)


def curves_svg(df: pd.DataFrame, chosen: str | None = None, x: str = "distinct_2",
               y: str = "error_rate") -> str:
    """Error rate against diversity, one line per method, the chosen point ringed."""
    d = curve_table(df, x, y)
    series = [Series(m, [(float(r[x]), float(r[y]), f"{r['label']}: {y} {r[y]:.3f}, {x} "
                          f"{r[x]:.3f}") for _, r in g.iterrows()])
              for m, g in d.groupby("method", sort=True)]
    mark = None
    if chosen is not None and (d["label"] == chosen).any():
        r = d[d["label"] == chosen].iloc[0]
        mark = (float(r[x]), float(r[y]), f"chosen: {chosen}")
    return line_chart(series, x_title="diversity (distinct-2, creative prompts)",
                      y_title="error rate (factual QA)", mark=mark, css_class="td-curves",
                      height=300)


def operating_points(df: pd.DataFrame) -> list[str]:
    """Labels of the rows on the controlled curves (methods named ``tigerdecode...``)."""
    d = df[df["method"].str.startswith("tigerdecode")]
    return d["label"].tolist()


def _creativity(setting) -> float | None:
    if isinstance(setting, bool):
        return None
    if isinstance(setting, int | float):
        return float(setting)
    if isinstance(setting, dict) and "creativity" in setting:
        return _creativity(setting["creativity"])
    if isinstance(setting, str):
        m = re.search(r"(?:creativity|\bc)\s*[=:]\s*([0-9.]+)", setting) or re.fullmatch(
            r"\s*([0-9.]+)\s*", setting)
        if m:
            try:
                return float(m.group(1))
            except ValueError:
                return None
    return None


def settings_for(df: pd.DataFrame, label: str) -> DecodeSettings:
    """The decoding settings of one operating point; the method suffix picks the extras
    (``+judge`` turns the judge on, ``+ensemble`` the self-ensemble)."""
    match = df[df["label"] == label]
    if match.empty:
        raise ResultsError(f"no operating point {str(label)[:80]!r}; choose one from the list")
    row = match.iloc[0]
    creativity = _creativity(row["setting"])
    if creativity is None:
        raise ResultsError(f"cannot read a creativity from setting {row['setting']!r} of {label!r}")
    overrides = {}
    extras = row["method"].split("+")[1:]
    if "judge" in extras:
        overrides["judge"] = True
    if "ensemble" in extras:
        overrides["ensemble"] = True
    if isinstance(row["setting"], dict):
        overrides.update({k: v for k, v in row["setting"].items() if k != "creativity"})
    metrics = {k: (None if pd.isna(row[k]) else float(row[k])) for k in METRICS}
    return DecodeSettings(creativity=creativity, method="tigerdecode", overrides=overrides,
                          source={"method": row["method"], "setting": row["setting"],
                                  "metrics": metrics})
