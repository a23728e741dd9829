"""The demo's event handlers: plain functions from widget values to widget values. Every failure
becomes a visible message (never a stack trace) and the app keeps serving."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from tigerdecode.demos import render, tradeoff
from tigerdecode.demos.backend import DemoBackend, InputError, Unavailable, policy_defaults
from tigerdecode.demos.batcher import Busy
from tigerdecode.settings import ConfigError, save_settings

log = logging.getLogger("tigerdecode.demo")
MAX_EXPORTS = 32  # settings files kept for download at once (older ones are removed)


def message(e: Exception) -> str:
    """A user-facing message for an exception: the text of errors we raise for bad input or
    missing features, a short generic line (the details go to the server log) for the rest."""
    if isinstance(e, Busy):  # the queue is full: the message says when to retry
        return f"**Busy:** {e}"
    # Ours, and the library's own ValueErrors (bad creativity, heads for another model, ...),
    # say what was wrong and what is allowed.
    if isinstance(e, InputError | Unavailable | ConfigError | ValueError):
        return f"**Cannot run:** {e}"
    log.error("generation failed", exc_info=e)
    return f"**Generation failed** ({type(e).__name__}: {str(e)[:300]}). The app is still running; " \
           "try again or change the settings."


def _shown_path(p: Path) -> str:
    """How the page names the launch results file: relative to the working folder when it is
    inside it, else its name only (the page may be open to the network; its folders stay
    private)."""
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return p.name


class Handlers:
    def __init__(self, backend: DemoBackend, results_path: str | Path | None = None):
        self.backend = backend
        # Chosen at launch (``tigerdecode demo --results``), never by a client.
        self.results_path = Path(results_path or tradeoff.default_results_path())
        self.results_name = _shown_path(self.results_path)
        self.export_dir = Path(tempfile.mkdtemp(prefix="tigerdecode-demo-"))

    # -- Generate ----------------------------------------------------------------------------
    def generate(self, prompt, creativity, max_new_tokens, seed, raw, ensemble_on,
                 factual_persona, creative_persona, judge_on, max_rewrites, consensus,
                 *policy_values):
        """Stream one answer: partial highlights while decoding, then every panel (with
        ``consensus`` > 1 samples, a waiting line instead of the partial answer: the answer is
        chosen once every sample is done). ``policy_values`` follow ``policy_defaults()``'s
        order (thresholds for the policy)."""
        kw = dict(creativity=creativity, max_new_tokens=max_new_tokens, seed=seed, raw=bool(raw),
                  ensemble=(factual_persona or "", creative_persona or "") if ensemble_on
                  else None, consensus=consensus)
        kw.update(self._policy_overrides(policy_values))
        if judge_on:
            kw.update(judge=True, max_rewrites=int(max_rewrites))
        tokens = []
        if consensus not in (None, 1, 1.0):
            yield (f"Drawing {consensus} samples; the answer is the one whose names the others "
                   "share most…", [], gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                   gr.skip())
        for kind, item in self.backend.stream(prompt, **kw):
            if kind == "token":
                tokens.append(item)
                yield (f"Generating… {len(tokens)} tokens", render.highlights(tokens),
                       gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
            elif kind == "error":
                yield (message(item), [], [], "", "", "", "", None)
            else:
                yield self._panels(item)

    def _policy_overrides(self, values) -> dict:
        """Only the thresholds the user changed from this build's defaults are sent."""
        out = {}
        for (name, default), v in zip(policy_defaults().items(), values, strict=False):
            v = bool(v) if isinstance(default, bool) else float(v)
            if v != default:
                out[name] = v
        return out

    @staticmethod
    def _link(request) -> tuple[dict, float | None]:
        q = dict(request.query_params) if request is not None else {}
        try:
            creativity = float(q.get("creativity", "0.5"))
        except ValueError:
            creativity = None
        return q, creativity if creativity is not None and 0 <= creativity <= 1 else None

    def link_inputs(self, request: gr.Request):
        """Deep link ``/?prompt=...&creativity=0.3``: fill the prompt box and the slider."""
        q, creativity = self._link(request)
        if not q.get("prompt"):
            return gr.skip(), gr.skip()
        return q["prompt"], gr.skip() if creativity is None else creativity

    def from_url(self, request: gr.Request):
        """Deep link: run the linked prompt (one answer, not streamed, so a page opened from a
        link shows the finished result)."""
        q, creativity = self._link(request)
        if not q.get("prompt"):
            return (gr.skip(),) * 8
        if creativity is None:
            return ("**Cannot run:** the link's creativity must be a number in [0, 1], got "
                    f"{q.get('creativity')!r}",) + (gr.skip(),) * 7
        n = q.get("max_new_tokens", "48")
        *_, last = self.generate(q["prompt"], creativity, int(n) if n.isdigit() else n,
                                 q.get("seed", 0), q.get("raw") == "1", False, "", "", False, 0,
                                 1)
        return last

    def _panels(self, result):
        status = "**Done.**" + (" The answer abstained." if result.abstained else "")
        trace = render.answer_trace(result)
        return (status, render.highlights(trace, "p_dev"), render.highlights(trace, "p_stop"),
                render.probability_svg(trace), render.summary_markdown(result),
                render.judge_html(result.judge, result.text),
                render.timings_markdown(result.timings, len(result.token_ids)), result.to_dict())

    # -- Compare -----------------------------------------------------------------------------
    def compare(self, prompt, creativity, max_new_tokens, seed, raw, consensus=1):
        """tigerdecode, then plain temperature sampling at the mean temperature it used; with
        ``consensus`` > 1 both sides draw that many samples and keep the most agreed-with (the
        same decode budget on each side)."""
        kw = dict(creativity=creativity, max_new_tokens=max_new_tokens, seed=seed, raw=bool(raw),
                  consensus=consensus)
        try:
            ours = self.backend.generate(prompt, **kw)
            temp = render.matching_temperature(ours)
            method_kw = {"method": "greedy"} if temp <= 0 else {"method": "temperature",
                                                               "temperature": temp}
            plain = self.backend.generate(prompt, **kw, **method_kw)
        except Exception as e:  # noqa: BLE001 - shown in the UI
            return message(e), [], []
        how = "greedy" if temp <= 0 else f"temperature {temp:.2f}"
        k = int(consensus)
        both = (f" Each side drew {k} samples and shows the one whose names the others share "
                "most." if k > 1 else "")
        note = (f"Plain sampling ran at **{how}** — the mean temperature tigerdecode used at "
                f"creativity {float(creativity):.2f} — with the same seed.{both} Highlights show "
                "p_dev where the heads scored the tokens.")
        return (note, render.highlights(render.answer_trace(ours)),
                render.highlights(render.answer_trace(plain)))

    # -- Trade-off ---------------------------------------------------------------------------
    # The tab shows the results file chosen at launch or a file uploaded through the page, held
    # in the session's state; no client-supplied string ever names a server path. Each returns
    # (status, curves, full table, operating-point dropdown, table for the session's state).
    def load_results(self):
        """The launch results file (read again, so a finished evaluation shows up)."""
        try:
            df = tradeoff.load_results(self.results_path, name=self.results_name)
        except FileNotFoundError:
            return self._no_table(
                f"No evaluation results at `{self.results_name}` yet. Run the evaluation "
                "(`tigerdecode eval`, which writes runs/eval-full/results.json) and reload, "
                "start the demo with `tigerdecode demo --results FILE`, or upload a results "
                "file here.")
        except tradeoff.ResultsError as e:
            return self._no_table(message(e))
        return self._shown(df, f"`{self.results_name}`")

    def upload_results(self, data: bytes | None):
        """An uploaded results file, parsed in memory (never written anywhere by us)."""
        if not data:
            return (f"**Cannot run:** no file arrived; choose a results JSON file (at most "
                    f"{tradeoff.MAX_RESULTS_BYTES // 1_000_000} MB).",) + (gr.skip(),) * 4
        try:
            df = tradeoff.parse_results(data, "the uploaded file")
        except tradeoff.ResultsError as e:  # keep what was shown before
            return (message(e),) + (gr.skip(),) * 4
        return self._shown(df, "the uploaded file")

    @staticmethod
    def _no_table(note):
        return note, "", None, gr.update(choices=[], value=None), None

    @staticmethod
    def _shown(df, source):
        points = tradeoff.operating_points(df)
        note = f"Loaded {len(df)} rows ({df['method'].nunique()} methods) from {source}."
        if not points:
            note += " No `tigerdecode` rows, so there is no operating point to pick."
        return (note, tradeoff.curves_svg(df, points[0] if points else None),
                df[tradeoff.COLUMNS].round(4),
                gr.update(choices=points, value=points[0] if points else None), df)

    def pick(self, table, label):
        """(the chosen point's settings as JSON text, the curves with that point marked)."""
        try:
            df = self._table(table, label)
            s = tradeoff.settings_for(df, label)
        except Exception as e:  # noqa: BLE001 - shown in the UI
            return message(e), gr.skip()
        return json.dumps(s.to_dict(), indent=2), tradeoff.curves_svg(df, chosen=label)

    def export(self, table, label):
        """(status, settings file for download): generated content under a name we choose."""
        try:
            s = tradeoff.settings_for(self._table(table, label), label)
            out = save_settings(s, self._export_path(s))
        except Exception as e:  # noqa: BLE001 - shown in the UI
            return message(e), None
        return (f"**Exported.** Use it with `tigerdecode generate --config {out.name} \"PROMPT\"` "
                "or `tigerdecode.generate(..., config=path)`.", str(out))

    def _table(self, table, label):
        """The session's table, else the launch file (an API caller that loaded nothing)."""
        if not isinstance(label, str) or not label:
            raise InputError("Pick an operating point first (load a results file).")
        if table is None:
            table = tradeoff.load_results(self.results_path, name=self.results_name)
        return table

    def _export_path(self, s) -> Path:
        """A fresh folder per export (two sessions never share a file) under this app's own
        temporary folder; only the newest ``MAX_EXPORTS`` are kept."""
        old = sorted(self.export_dir.iterdir(), key=lambda d: d.stat().st_mtime)
        for d in old[:max(0, len(old) - MAX_EXPORTS + 1)]:
            shutil.rmtree(d, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(dir=self.export_dir))
        return folder / f"tigerdecode-settings-c{s.creativity:.2f}.json"
