"""The Gradio app: Generate (creativity slider, per-token risk, judge, timings, streaming),
Compare (plain sampling vs tigerdecode) and Trade-off (evaluation curves, operating point,
settings export). ``build_app`` lays it out; ``launch`` serves it on a bounded queue.

No endpoint takes a server path: the Trade-off tab reads the file chosen at launch or an upload
held in memory, and exports are files the app writes under names it chooses."""

from __future__ import annotations

import gradio as gr

from tigerdecode.demos import tradeoff
from tigerdecode.demos.backend import (
    CREATIVE_PERSONA,
    FACTUAL_PERSONA,
    DemoBackend,
    policy_defaults,
)
from tigerdecode.demos.handlers import Handlers

CREATIVITY_LABEL = "Creativity (0 = factual, 1 = creative)"
EXAMPLES = ["What is the capital of Japan?", "Who wrote the play Romeo and Juliet?",
            "Write one sentence about a lighthouse keeper who finds a strange map."]
CSS = ".td-judge ol{margin:0.3em 0 0 1.2em} .td-judge del,.td-judge ins{text-decoration:none}"


def _creativity_slider():
    return gr.Slider(0, 1, value=0.5, step=0.05, label=CREATIVITY_LABEL,
                     elem_id="creativity")


def _policy_controls() -> list:
    """Threshold widgets for the policy fields this build has (see ``policy_defaults``)."""
    d = policy_defaults()
    if not d:
        return []
    gr.Markdown("**Policy thresholds** (how the heads act at low creativity)")
    return [
        gr.Checkbox(d["use_resample"], label="Undo and resample a token whose p_dev is high"),
        gr.Slider(0, 1, value=d["resample_at"], step=0.05, label="Resample when p_dev ≥"),
        gr.Checkbox(d["use_abstain"], label="Abstain when the risk stays high"),
        gr.Slider(0, 1, value=d["abstain_at"], step=0.05, label="Abstain when p_dev ≥"),
    ]


REFUSE_SLOTS = 16  # handler slots beyond what the batcher holds: where "busy" is answered


def _model_queue(h: Handlers) -> dict:
    """Generate and Compare share one pool of handler slots: one per request the batcher can
    hold (decoding or waiting) and ``REFUSE_SLOTS`` more, so a request beyond the batcher's
    bound reaches it and is told at once that the demo is busy and when to retry, instead of
    waiting unseen in Gradio's own queue."""
    b = h.backend.batcher
    return {"concurrency_limit": b.max_waiting + b.max_batch + REFUSE_SLOTS,
            "concurrency_id": "model"}


def _generate_tab(h: Handlers, caps: dict):
    lim = h.backend.limits
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label=f"Prompt (at most {lim.max_prompt_chars} characters)",
                                lines=3, value=EXAMPLES[0], elem_id="prompt")
            gr.Examples(EXAMPLES, inputs=prompt)
            creativity = _creativity_slider()
            with gr.Accordion("Advanced settings", open=False):
                max_new = gr.Slider(1, lim.max_new_tokens, value=min(48, lim.max_new_tokens),
                                    step=1, label=f"Max new tokens (1–{lim.max_new_tokens})")
                seed = gr.Number(value=0, precision=0, label="Seed (empty = random)")
                raw = gr.Checkbox(False, label="Plain completion (no chat template)")
                ens_note = "" if caps["ensemble"] else " — not available in this build"
                ensemble = gr.Checkbox(False, label="Ensemble: factual + creative persona"
                                       + ens_note, interactive=caps["ensemble"])
                factual = gr.Textbox(FACTUAL_PERSONA, label="Factual persona (empty: the "
                                     "model's default system turn)",
                                     interactive=caps["ensemble"])
                creative = gr.Textbox(CREATIVE_PERSONA, label="Creative persona",
                                      interactive=caps["ensemble"])
                judge_note = "" if caps["judge"] else f" — {h.backend.judge_note}"
                judge = gr.Checkbox(False, label="Judge the whole answer and rewrite if risky"
                                    + judge_note, interactive=caps["judge"], elem_id="judge-on")
                rewrites = gr.Slider(0, 4, value=1, step=1, label="Max rewrites",
                                     interactive=caps["judge"])
                consensus = gr.Slider(1, lim.max_consensus, value=1, step=1,
                                      label="Samples: draw this many and show the one whose "
                                      "names the others share most (1 = off; no streaming)",
                                      elem_id="consensus")
                policy = _policy_controls()
            run = gr.Button("Generate", variant="primary", elem_id="generate-btn")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="gen-status")
            pdev = gr.HighlightedText(label="Answer — each token shaded by p_dev (risk of "
                                      "departing from fact)", elem_id="answer-pdev",
                                      combine_adjacent=False)
            with gr.Accordion("p_stop view (the answer is complete here)", open=False):
                pstop = gr.HighlightedText(label="Answer — shaded by p_stop",
                                           elem_id="answer-pstop")
            summary = gr.Markdown()
            plot = gr.HTML(label="p_dev and p_stop along the answer", elem_id="prob-plot")
            judge_panel = gr.HTML()
            timings = gr.Markdown()
            with gr.Accordion("Full result (JSON)", open=False):
                result_json = gr.JSON()
    outputs = [status, pdev, pstop, plot, summary, judge_panel, timings, result_json]
    run.click(h.generate,
              [prompt, creativity, max_new, seed, raw, ensemble, factual, creative, judge,
               rewrites, consensus, *policy], outputs, api_name="generate", **_model_queue(h))
    return [prompt, creativity], outputs


def _compare_tab(h: Handlers) -> None:
    gr.Markdown("The same prompt, same seed: tigerdecode at the chosen creativity, and plain "
                "temperature sampling at the mean temperature tigerdecode ended up using; with "
                "Samples above 1, both sides draw that many and keep the most agreed-with.")
    with gr.Row():
        prompt = gr.Textbox(EXAMPLES[1], label="Prompt", lines=2, scale=3)
        with gr.Column(scale=2):
            creativity = _creativity_slider()
            with gr.Row():
                max_new = gr.Number(48, precision=0, label="Max new tokens")
                seed = gr.Number(0, precision=0, label="Seed")
                raw = gr.Checkbox(False, label="Plain completion")
            consensus = gr.Slider(1, h.backend.limits.max_consensus, value=1, step=1,
                                  label="Samples, on both sides: each shows the one whose names "
                                  "the others share most (1 = off)", elem_id="compare-consensus")
    run = gr.Button("Compare", variant="primary")
    note = gr.Markdown()
    with gr.Row():
        ours = gr.HighlightedText(label="tigerdecode")
        plain = gr.HighlightedText(label="plain sampling")
    run.click(h.compare, [prompt, creativity, max_new, seed, raw, consensus], [note, ours, plain],
              api_name="compare", **_model_queue(h))


def _tradeoff_tab(h: Handlers):
    gr.Markdown("Error rate on factual questions against diversity on creative prompts, one "
                "curve per method, from an evaluation run. Lower and further right is better.")
    with gr.Row():
        gr.Markdown(f"Results file: `{h.results_name}` (chosen when the demo started, "
                    "`tigerdecode demo --results FILE`), or upload one written by "
                    "`tigerdecode eval --json` (at most "
                    f"{tradeoff.MAX_RESULTS_BYTES // 1_000_000} MB).")
        reload = gr.Button("Reload", scale=0, min_width=100)
        upload = gr.UploadButton("Upload results JSON", file_types=[".json"], type="binary",
                                 scale=0, min_width=180)
    status = gr.Markdown()
    plot = gr.HTML(elem_id="tradeoff-plot")
    table = gr.Dataframe(label="All rows", interactive=False)
    with gr.Row():
        point = gr.Dropdown([], label="Operating point on a tigerdecode curve", scale=3)
        export = gr.Button("Export settings JSON", scale=1)
    chosen = gr.Code(language="json", label="Chosen settings")
    export_status = gr.Markdown()
    exported = gr.File(label="Settings file")
    loaded = gr.State(None)  # this session's results table (the launch file or an upload)
    outs = [status, plot, table, point, loaded]
    reload.click(h.load_results, None, outs, api_name="load_results")
    upload.upload(h.upload_results, [upload], outs, api_name="upload_results")
    point.change(h.pick, [loaded, point], [chosen, plot], api_name="pick")
    export.click(h.export, [loaded, point], [export_status, exported], api_name="export")
    return outs


def build_app(backend: DemoBackend, results_path=None) -> gr.Blocks:
    """The whole app on one backend (model loaded once, before this is called). The Trade-off
    tab reads ``results_path`` (chosen here, by whoever starts the demo) or an upload."""
    h = Handlers(backend, results_path)
    caps = backend.capabilities()
    with gr.Blocks(title="tigerdecode") as demo:
        gr.Markdown(f"# tigerdecode — a creativity knob\nModel: `{backend.model_name}`. Move "
                    "the **Creativity** slider: low keeps answers factual and short, high lets "
                    "the model roam. Every token is shaded by the control heads' risk.")
        if not caps["controlled"]:
            gr.Markdown("**Note:** Controlled generation is not available in this build; Generate and "
                        "Compare will say so.")
        with gr.Tab("Generate"):
            link_inputs, gen_outputs = _generate_tab(h, caps)
        with gr.Tab("Compare"):
            _compare_tab(h)
        with gr.Tab("Trade-off"):
            outs = _tradeoff_tab(h)
        # When the page opens: show the evaluation results, and run a prompt given in the URL.
        demo.load(h.load_results, None, outs)
        # Not queued: the page's own request waits for the answer (the backend's lock still
        # serialises generations), so a headless browser sees the finished result.
        demo.load(h.link_inputs, None, link_inputs, queue=False)
        demo.load(h.from_url, None, gen_outputs, queue=False)
    return demo


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None,
           concurrency: int = 1, max_queue: int = 256, block: bool = True):
    """Serve on a bounded queue: other events (the Trade-off tab) ``concurrency`` at once;
    Generate and Compare as many as the backend's batcher holds (``_model_queue``); at most
    ``max_queue`` events wait in Gradio's queue. Uploads (the Trade-off tab's results file)
    are refused above the results size bound."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    # each waiting request holds a worker thread (blocked, not computing) until it is served
    limits = {fn.concurrency_id: fn.concurrency_limit for fn in demo.fns.values()}
    slots = sum(v for v in limits.values() if isinstance(v, int))
    return demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                       show_error=False, quiet=not block, css=CSS,
                       max_file_size=tradeoff.MAX_RESULTS_BYTES,
                       max_threads=max(40, slots + 16))
