"""``tigerdecode fit MODEL``: control heads and judge for any model in one command.

The stages, in order, each reusing the command that does it by hand:

    measure     time one data-build batch and one judge re-read (only with a budget)
    data-qa     ``data build``: facts of the train + validation relations in every form
    data-open   ``data build --open``: answers to open prompts (free text claims no fact)
    heads       ``heads train`` on both
    judge       ``judge train`` on both (without heads, as the shipped judge)
    publish     heads and judge into their checkpoint folders (``heads="auto"`` finds them)
    eval-heads  ``heads eval`` on held-out test relations; the judge's P(wrong) on those answers
    eval-judge  ``judge eval``: answers without and with the judge (when a judge evaluator is
                given; the CLI passes ``tigerdecode judge eval``'s)
    card        metrics.json and MODEL_CARD.md beside the weights

Everything lives in a work directory. The plan (sizes and settings, :mod:`fit_plan`) is written
first and fixed; each stage ends by writing ``done/<stage>.json`` (temp file + rename), so a
rerun skips finished stages, and inside the data builds every finished unit (a batch under one
setting) is kept. A run killed anywhere, rerun, gives the same checkpoint as one never
interrupted (the sampling of a unit depends on its own seed only).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tigerdecode.training.fit_plan import (
    SELECT_SPLITS,
    FitError,
    Plan,
    Throughput,
    estimate,
    full_plan,
    plan_for_budget,
    quick_plan,
    resources,
)

STAGES = ("measure", "data-qa", "data-open", "heads", "judge", "publish", "eval-heads",
          "bars", "eval-judge", "card")
BARS_BUDGET = 0.05  # the share of right answers abstention may lose (`policy risk --budget`)
EASY_FACTS = "easy_validation_facts.jsonl"  # the bars stage's second part (data/README.md)
WORK_FORMAT = 1


@dataclass
class FitRequest:
    """What the user asked for (``tigerdecode fit``'s options)."""

    model: str = "default"
    qa_path: str | None = None  # default: the vendored qa_wikidata
    open_path: str | None = None  # default: data/open_prompts_train.jsonl
    creative_path: str | None = None  # default: data/creative_prompts.jsonl (evaluation only)
    budget_minutes: float | None = None
    quick: bool = False
    out: str | Path | None = None  # default: $TIGERDECODE_CACHE/heads/<fit_name>
    work_dir: str | Path | None = None  # default: $TIGERDECODE_CACHE/fit/<fit_name>
    seed: int = 0
    restart: bool = False
    progress: bool = True
    command: str = ""  # the command line, for the model card


def fit_name(fp) -> str:
    """A folder name for a fingerprint: ``llamaforcausallm-576x30-313de37f``."""
    arch = re.sub(r"[^a-z0-9]+", "-", fp.architecture.lower()).strip("-") or "model"
    return f"{arch}-{fp.hidden_size}x{fp.num_layers}-{fp.tokenizer_hash[:8]}"


def write_json(path: Path, obj) -> None:
    """Temp file + rename: an interrupted write never leaves half a file."""
    from tigerdecode.fsutil import atomic_write

    atomic_write(path, json.dumps(obj, indent=1))


@contextlib.contextmanager
def work_lock(work: Path):
    """One fit at a time per work directory (a second one is a clear error, not a race); while
    held, any temp file under it was left by a run that died, so it is removed."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FitError(f"another `tigerdecode fit` is running in {work}; wait for it, or "
                           "give this one another --work-dir") from None
        try:
            remove_partial_files([work])
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _file_hash(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Overall:
    """The overall progress bar, in estimated seconds of work, so tqdm's ETA covers every stage
    still to run whatever the current stage's own bar shows."""

    def __init__(self, estimates: dict[str, float], enabled: bool):
        from tqdm import tqdm

        self.est = estimates
        self.bar = tqdm(total=max(1, round(sum(estimates.values()))), desc="fit (overall)",
                        unit="s", disable=not enabled, position=0,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, "
                                   "ETA {remaining}")
        self.base = 0.0

    def stage(self, name: str) -> None:
        self.base = self.bar.n

    def within(self, name: str, done: int, total: int) -> None:
        target = self.base + self.est.get(name, 0) * done / max(total, 1)
        self.bar.update(max(0, round(target) - self.bar.n))

    def finish(self, name: str) -> None:
        self.bar.update(max(0, round(self.base + self.est.get(name, 0)) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


class Fit:
    """One fit: the model, the plan, the work directory and the stages (see the module)."""

    def __init__(self, req: FitRequest, model, tokenizer, *, judge_eval=None, log=print,
                 on_unit=None):
        from tigerdecode.heads.checkpoint import user_heads_dir
        from tigerdecode.model.load import cache_dir, fingerprint
        from tigerdecode.model.taps import num_layers
        from tigerdecode.qa.data import dataset_path, qa_wikidata_path

        self.req, self.model, self.tok, self.log = req, model, tokenizer, log
        self.judge_eval, self.on_unit = judge_eval, on_unit
        self.fp = fingerprint(model, tokenizer)
        self.n_layers = num_layers(model)
        self.name = fit_name(self.fp)
        self.out = Path(req.out) if req.out is not None else user_heads_dir() / self.name
        self.judge_out = self.out.with_name(self.out.name + "-judge")
        self.work = Path(req.work_dir) if req.work_dir is not None else \
            cache_dir() / "fit" / self.name
        self.qa_path = Path(req.qa_path) if req.qa_path else qa_wikidata_path()
        self.open_path = Path(req.open_path) if req.open_path else \
            dataset_path("open_prompts_train.jsonl")
        self.creative_path = Path(req.creative_path) if req.creative_path else \
            dataset_path("creative_prompts.jsonl")
        for what, p in (("--qa", self.qa_path), ("--open", self.open_path),
                        ("--creative", self.creative_path)):
            if not p.is_file():
                raise FitError(f"{what} {p} is not a file; expected a JSONL file "
                               "(docs/heads-and-training.md#the-qa-format)")
        self.plan: Plan | None = None
        self.overall: Overall | None = None

    # ---- inputs ---------------------------------------------------------------------------

    def options(self) -> dict:
        """What decides the work: a rerun with other options cannot resume it."""
        return {"format": WORK_FORMAT, "fingerprint": self.fp.to_dict(),
                "qa": _file_hash(self.qa_path), "open": _file_hash(self.open_path),
                "creative": _file_hash(self.creative_path),
                "budget_minutes": self.req.budget_minutes, "quick": self.req.quick,
                "seed": self.req.seed}

    def qa_items(self, split: str, n: int, seed: int) -> list:
        from tigerdecode.qa.data import QAFormatError, load_qa, select_split

        try:
            items = load_qa(self.qa_path)
        except QAFormatError as e:
            raise FitError(str(e)) from None
        parts = ("train", "validation") if split == "train+validation" else (split,)
        pool = [it for s in parts for it in select_split(items, s)]
        if n < len(pool):
            pool = random.Random(seed).sample(pool, n)
        return pool

    def open_items(self, path: Path, n: int) -> list:
        from tigerdecode.qa.data import QAFormatError, load_prompts

        try:
            return load_prompts(path)[:n]
        except QAFormatError as e:
            raise FitError(str(e)) from None

    # ---- the plan -------------------------------------------------------------------------

    def make_plan(self, t_start: float, record: bool = True) -> Plan:
        """Read the plan of this work directory, or choose one (measuring the model when a budget
        is given) and record it (unless ``record`` is False: a dry run)."""
        path = self.work / "plan.json"
        opts = self.options()
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("options") != opts:
                diff = sorted(k for k in set(opts) | set(rec.get("options", {}))
                              if opts.get(k) != rec.get("options", {}).get(k))
                raise FitError(
                    f"{self.work} holds a fit started with other options (they differ in "
                    f"{', '.join(diff)}); rerun with the same options to resume it, add "
                    "--restart to discard it, or give another --work-dir")
            self.log(f"resuming the fit in {self.work}")
            return Plan.from_dict(rec["plan"])
        self.check_qa()
        if self.req.quick or self.req.budget_minutes is None:
            plan = (quick_plan if self.req.quick else full_plan)(self.n_layers)
            self.check_resources(plan, _nominal_throughput(self.fp.hidden_size))
        else:
            tp = self.measure()
            pool = len(self.qa_items("train+validation", 10**9, 0))
            plan = plan_for_budget(60 * self.req.budget_minutes, tp, n_layers=self.n_layers,
                                   pool=pool,
                                   n_open_available=len(self.open_items(self.open_path, 10**9)),
                                   spent_s=time.perf_counter() - t_start)
            self.check_resources(plan, tp)
            if record:
                write_json(self.work / "throughput.json", tp.to_dict())
        if record:
            write_json(path, {"options": opts, "plan": plan.to_dict()})
        return plan

    def check_qa(self) -> None:
        """The QA file's relations (``topic``) must fill all three splits: train and validation
        relations train heads and judge, test relations evaluate them. Checked before any work."""
        from tigerdecode.qa.data import load_qa, split_topics

        split = split_topics(load_qa(self.qa_path))
        empty = [s for s in ("train", "validation", "test") if not split[s]]
        if empty:
            raise FitError(
                f"{self.qa_path} splits into {len(split['train'])} train / "
                f"{len(split['validation'])} validation / {len(split['test'])} test relations; "
                f"fit needs relations in every split (none in {', '.join(empty)}). Give each "
                "item a 'topic' (its relation) with at least ~25 topics, none holding more than "
                "5% of the items (tigerdecode.qa.data.split_topics).")

    def measure(self) -> Throughput:
        """Time one data-build batch greedy and sampled (every hook the build uses; top-p costs a
        sort of the vocabulary a step) and the judge's re-read of its answers: the throughput a
        budget is turned into sizes with."""
        from tigerdecode.model.load import text_config
        from tigerdecode.qa.forms import FORMS, with_forms
        from tigerdecode.training.build import asks_bare, user_message
        from tigerdecode.training.judge_train import judge_features
        from tigerdecode.training.sampling import Setting, sample_answers

        t0 = time.perf_counter()
        base = full_plan(self.n_layers)
        facts = self.qa_items("train+validation", 64, self.req.seed + 7)
        forms = with_forms(facts, FORMS, seed=self.req.seed)
        batch = random.Random(1).sample(forms, min(base.batch_size, len(forms)))
        prompts = [user_message(it, asks_bare(it)) for it in batch]
        sampled = base.qa_max_new_tokens // 2
        self.log(f"measuring: one batch of {len(batch)} prompts, greedy ({base.qa_max_new_tokens}"
                 f" new tokens) and sampled ({sampled})")
        t1 = time.perf_counter()
        res = sample_answers(self.model, self.tok, prompts, base.layers, Setting("greedy"),
                             base.qa_max_new_tokens, seed=0)
        t_decode = time.perf_counter() - t1
        width = res[0]["prompt_states"][base.layers[0]].shape[-1]
        hidden = text_config(self.model).hidden_size
        if width != hidden:
            raise FitError(
                f"the model's decoder layers give states of width {width} but its config says "
                f"hidden_size {hidden}; control heads read hidden_size-wide states at run time, "
                "so they cannot be trained for this model (its architecture is not supported)")
        t2 = time.perf_counter()
        judge_features(self.model, self.tok, prompts, [r["token_ids"] for r in res],
                       [r["ended_by_eos"] for r in res], base.layers, None, batch_size=32,
                       desc="measuring the judge's re-read")
        t_judge = time.perf_counter() - t2
        t3 = time.perf_counter()
        sample_answers(self.model, self.tok, prompts, base.layers, Setting("t1-p0.95", 1.0, 0.95),
                       sampled, seed=0)
        t_sample = time.perf_counter() - t3
        tp = Throughput(decode_s_per_token=t_decode / (len(batch) * base.qa_max_new_tokens),
                        sample_s_per_token=t_sample / (len(batch) * sampled),
                        reencode_s_per_answer=t_judge / len(batch),
                        forms_per_fact=len(forms) / max(1, len(facts)), hidden_size=hidden,
                        seconds=round(time.perf_counter() - t0, 1))
        self.log(f"measured {tp.speed()} at batch {len(batch)}, "
                 f"{tp.reencode_s_per_answer * 1000:.0f} ms per judge re-read")
        return tp

    def check_resources(self, plan: Plan, tp: Throughput) -> None:
        """Disk for the stored states and memory for heads training, before anything is built."""
        need = resources(plan, tp)
        where = self.work
        while not where.exists():  # a dry run creates nothing
            where = where.parent
        free = shutil.disk_usage(where).free
        if need["disk"] > free:
            raise FitError(
                f"the plan stores about {need['disk'] / 1e9:.1f} GB of hidden states in "
                f"{self.work} but only {free / 1e9:.1f} GB are free; free space, give a smaller "
                "--budget-minutes, or point --work-dir at a larger disk")
        avail = _available_memory()
        if avail is not None and need["memory"] > 0.7 * avail:
            raise FitError(
                f"heads training would hold about {need['memory'] / 1e9:.1f} GB of features "
                f"({need['tokens']:.0f} tokens x {len(plan.layers)} layers x hidden size "
                f"{tp.hidden_size}), more than this machine's {avail / 1e9:.1f} GB available "
                "allow; give a smaller --budget-minutes (fewer facts)")

    # ---- running --------------------------------------------------------------------------

    def run(self, t_start: float | None = None, dry_run: bool = False) -> dict:
        """All stages, skipping those done; ``t_start``: when the command began (a budget
        counts loading the model too). ``dry_run``: choose the plan, say it, build nothing."""
        t_start = time.perf_counter() if t_start is None else t_start
        if dry_run:
            return self._run(t_start, dry_run)
        with work_lock(self.work):
            if self.req.restart:
                for p in self.work.iterdir():
                    if p.name != ".lock":
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
            return self._run(t_start, dry_run)

    def _run(self, t_start: float, dry_run: bool) -> dict:
        plan = self.plan = self._guarded("measure",
                                         lambda: self.make_plan(t_start, record=not dry_run))
        est = plan.estimates or estimate(plan, _nominal_throughput(self.fp.hidden_size))
        self.log(f"plan: {plan.why}; {plan.n_qa} facts x forms, {plan.n_open} open prompts, "
                 f"{plan.n_eval} held-out facts; layers {plan.layers}; work in {self.work}")
        if dry_run:
            self.log("estimated minutes per stage: " + ", ".join(
                f"{s} {est[s] / 60:.1f}" for s in STAGES[1:] if s in est)
                + ("" if plan.estimates else " (nominal speed: no measurement without a budget)"))
            return {"out": self.out, "judge_out": self.judge_out, "work": self.work,
                    "plan": plan, "results": {}, "auto": {}}
        self.overall = Overall({s: est.get(s, 0.0) for s in STAGES[1:]}, self.req.progress)
        self.republish_if_missing()
        results = {}
        try:
            ran = False
            for i, stage in enumerate(STAGES[1:], start=1):
                if stage == "card" and ran:  # the card sums up the stages: redo it when one ran
                    (self.work / "done" / "card.json").unlink(missing_ok=True)
                marker = self.work / "done" / f"{stage}.json"
                ran |= not marker.is_file()
                results[stage] = self.stage(i, stage)
        finally:
            self.overall.close()
        from tigerdecode.heads.checkpoint import find_checkpoint

        return {"out": self.out, "judge_out": self.judge_out, "work": self.work, "plan": plan,
                "results": results,
                "auto": {k: find_checkpoint(self.model, self.tok, k) for k in ("heads", "judge")}}

    def republish_if_missing(self) -> None:
        """Checkpoints deleted (or another --out) since they were written: the publish and card
        stages run again from the work directory (cheap; nothing is retrained)."""
        have = (self.out / "heads.safetensors").is_file() and \
            (self.judge_out / "judge.safetensors").is_file()
        card = (self.out / "MODEL_CARD.md").is_file()
        for stage, missing in (("publish", not have), ("card", not (have and card))):
            if missing:
                (self.work / "done" / f"{stage}.json").unlink(missing_ok=True)

    def stage(self, i: int, name: str) -> dict:
        marker = self.work / "done" / f"{name}.json"
        n = len(STAGES) - 1
        self.overall.stage(name)
        if marker.is_file():
            self.log(f"[{i}/{n}] {name}: done in an earlier run")
            self.overall.finish(name)
            return json.loads(marker.read_text())
        self.log(f"[{i}/{n}] {name} ...")
        t0 = time.perf_counter()
        fn = getattr(self, "stage_" + name.replace("-", "_"))
        result = self._guarded(name, fn)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        write_json(marker, result)
        self.overall.finish(name)
        return result

    def _guarded(self, name: str, fn):
        """Run ``fn``; a full disk becomes a FitError after the partial files are removed."""
        try:
            return fn()
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            removed = remove_partial_files([self.work, self.out.parent])
            raise FitError(
                f"the disk filled up during stage {name} ({e.strerror}: "
                f"{e.filename or self.work}); {removed} partial file(s) were removed, every "
                "finished unit is kept. Free some space and rerun the same command: it "
                "resumes where it stopped.") from None

    def _units(self, name: str):
        def cb(done: int, total: int) -> None:
            self.overall.within(name, done, total)
            if self.on_unit is not None:
                self.on_unit(name, done, total)
        return cb

    # ---- the stages (each returns a JSON summary) -----------------------------------------

    def _build(self, name: str, items, out: Path, settings: str, max_new: int, batch: int,
               *, bare: bool = False, seed: int | None = None) -> dict:
        from tigerdecode.training.build import build_data
        from tigerdecode.training.sampling import parse_settings

        store = build_data(self.model, self.tok, items, out, layers=self.plan.layers,
                           settings=parse_settings(settings), max_new_tokens=max_new,
                           batch_size=batch, seed=self.req.seed if seed is None else seed,
                           progress=self.req.progress, bare_questions=bare,
                           on_unit=self._units(name))
        m = store.manifest()
        return {"n_answers": sum(u["n_answers"] for u in m["units"]),
                "n_tokens": sum(u["n_tokens"] for u in m["units"]), "units": len(m["units"])}

    def stage_data_qa(self) -> dict:
        from collections import Counter

        from tigerdecode.qa.forms import FORMS, form_of, with_forms

        p = self.plan
        facts = self.qa_items("train+validation", p.n_qa, self.req.seed)
        items = with_forms(facts, FORMS, seed=self.req.seed)
        if not items:
            raise FitError(f"{self.qa_path} has no items in its train and validation relations")
        return {"n_facts": len(facts), "n_prompts": len(items),
                "forms": dict(sorted(Counter(form_of(it) for it in items).items())),
                **self._build("data-qa", items, self.work / "data_qa", p.qa_settings,
                              p.qa_max_new_tokens, p.batch_size, bare=True)}

    def stage_data_open(self) -> dict:
        p = self.plan
        items = self.open_items(self.open_path, p.n_open)
        return {"n_prompts": len(items),
                **self._build("data-open", items, self.work / "data_open", p.open_settings,
                              p.open_max_new_tokens, p.open_batch_size)}

    def data_dirs(self) -> list[Path]:
        return [self.work / "data_qa", self.work / "data_open"]

    def stage_heads(self) -> dict:
        from tigerdecode.training.train import TrainConfig, train_heads

        tc = TrainConfig(candidates=self.plan.candidates, kinds=["linear"],
                         max_epochs=self.plan.max_epochs, seed=self.req.seed,
                         select_splits=SELECT_SPLITS)
        try:
            _, metrics = train_heads(self.data_dirs(), self.work / "heads", tc, log=self.log)
        except ValueError as e:
            raise FitError(f"heads training failed: {e}. More data usually fixes this: a larger "
                           "--budget-minutes (or a QA file with more relations).") from None
        v = metrics["validation"]
        return {"selected": metrics["selected"], "outputs": _outputs(self.work / "heads"),
                "validation": {"p_dev_token_auroc": v["p_dev"]["token_auroc"],
                               "p_dev_answer_auroc": v["p_dev"]["answer_auroc"],
                               "p_stop_auroc": v["p_stop"]["auroc"]}}

    def stage_judge(self) -> dict:
        from tigerdecode.training.judge_train import JudgeTrainConfig, train_judge

        try:
            _, m = train_judge(self.model, self.tok, self.data_dirs(), self.work / "judge",
                               JudgeTrainConfig(layers=tuple(self.plan.layers)), heads=None,
                               qa_path=self.qa_path, log=self.log)
        except ValueError as e:
            raise FitError(f"judge training failed: {e}. A larger --budget-minutes gives the "
                           "validation relations more answers.") from None
        return {k: m[k] for k in ("n_train", "n_validation", "validation_auroc",
                                  "validation_ece", "best_signal")}

    def stage_publish(self) -> dict:
        """Heads and judge into their folders now, so ``heads="auto"`` finds them (and the judge
        evaluation decodes with them); the card stage adds the evaluations."""
        install(self.work / "heads", self.out, {})
        install(self.work / "judge", self.judge_out, {})
        return {"heads": str(self.out), "judge": str(self.judge_out)}

    def stage_eval_heads(self) -> dict:
        from tigerdecode.heads import ControlHeads
        from tigerdecode.training.evaluate import evaluate_heads, summary
        from tigerdecode.training.sampling import parse_settings

        p = self.plan
        items = self.qa_items("test", p.n_eval, 1)
        if not items:
            raise FitError(f"{self.qa_path} has no items in its test relations to evaluate on")
        items += self.open_items(self.creative_path, p.n_creative_eval)
        store = self.work / "eval_heads"
        # built here first (same options as evaluate_heads uses) for the progress bars
        self._build("eval-heads", items, store, p.eval_settings, p.eval_max_new_tokens,
                    p.batch_size, seed=1)
        heads = ControlHeads.load(self.work / "heads", model=self.model, tokenizer=self.tok)
        rep = evaluate_heads(self.model, self.tok, heads, items,
                             settings=parse_settings(p.eval_settings),
                             max_new_tokens=p.eval_max_new_tokens, batch_size=p.batch_size,
                             seed=1, work_dir=store, progress=False)
        out = {"heads": summary(rep), "n_items": len(items),
               "settings": {k: {"accuracy": v["accuracy"], "n_answers": v["n_answers"]}
                            for k, v in rep.get("settings", {}).items()}}
        out["judge"] = self.judge_on_store(store)
        return out

    def judge_on_store(self, store: Path) -> dict:
        """The judge's P(wrong) on the held-out answers beside the token-level signals it also
        reads (same answers): AUROC on the factual ones, and how creative ones are scored."""
        import numpy as np
        import torch

        from tigerdecode.judge.model import Judge
        from tigerdecode.training.judge_train import (
            SIGNAL_SIGN,
            JudgeTrainConfig,
            load_training_set,
        )
        from tigerdecode.training.metrics import auroc, ece

        judge = Judge.load(self.work / "judge", model=self.model, tokenizer=self.tok)
        x, y, topics, names = load_training_set(
            self.model, self.tok, store, JudgeTrainConfig(layers=tuple(judge.config.layers)))
        with torch.no_grad():
            z = (torch.from_numpy(x).float() - judge.feat_mean) / judge.feat_std
            p = judge.calibrator(judge.net(z).squeeze(-1)).numpy()
        fact = np.array([not t.startswith("open:") for t in topics])
        yf, pf, xf = y[fact], p[fact], x[fact]
        both = len(np.unique(yf)) == 2
        signals = {n: (auroc(yf, SIGNAL_SIGN[n] * xf[:, -len(names) + i]) if both else None)
                   for i, n in enumerate(names) if n in SIGNAL_SIGN}
        best = max(signals, key=lambda k: signals[k] or 0)
        return {"n_factual": int(fact.sum()), "wrong_rate": float(yf.mean()) if len(yf) else None,
                "auroc": auroc(yf, pf) if both else None,
                "ece": float(ece(yf, pf)) if len(yf) else None,
                "signal_auroc": signals, "best_signal": best,
                "n_creative": int((~fact).sum()),
                "creative_mean_p_wrong": float(p[~fact].mean()) if (~fact).any() else None}

    def stage_bars(self) -> dict:
        """The abstention bars for these heads, chosen as `tigerdecode policy risk --write`
        does: validation-relation facts asked as questions and completions, decoded once at
        creativity 0 with abstention off, the lowest bars within the error budget. Too few right
        answers (the model knows too few of these facts): none are chosen, and the card says
        so; the policy's defaults then apply."""
        from tigerdecode.api import ControlledGenerator
        from tigerdecode.eval import risk
        from tigerdecode.heads import ControlHeads
        from tigerdecode.qa.data import dataset_path, load_qa
        from tigerdecode.qa.forms import with_forms

        p = self.plan
        heads = ControlHeads.load(self.work / "heads", model=self.model, tokenizer=self.tok)
        if "risk" not in heads.config.outputs:
            return {"policy": None, "why": "the heads have no p_risk output"}
        facts = self.qa_items("validation", p.n_eval, 2)
        items = with_forms(facts, ("question", "completion"), seed=self.req.seed)
        if not items:
            return {"policy": None, "why": f"{self.qa_path} has no validation relations"}
        # beside them, validation-relation facts most models know, as a part of their own: the
        # budget holds in both, so the bars do not serve obscure facts at the cost of easy ones
        easy = load_qa(dataset_path(EASY_FACTS))
        random.Random(self.req.seed).shuffle(easy)
        easy = easy[:p.n_eval]
        parts = ["relations"] * len(items) + ["easy"] * len(easy)
        gen = ControlledGenerator(self.model, self.tok, heads=heads, warn=False)
        res = risk.run(gen, items + easy, [], [0.0], budget=BARS_BUDGET,
                       max_new_tokens=p.eval_max_new_tokens, batch=p.batch_size,
                       seed=self.req.seed, progress=False, parts=parts)
        lv = res["levels"][0]
        bars = risk.chosen_bars(res)
        return {"policy": bars, "budget": BARS_BUDGET, "n_items": len(items) + len(easy),
                "n_easy": len(easy), "parts": lv.get("parts"),
                "n_right": lv["n_right"], "n_wrong": lv["n_wrong"],
                "why": None if bars is not None else
                f"{res.get('too_few_right', lv['n_right'])} right answers "
                f"{'in the part with the fewest' if res.get('too_few_in') == 'part' else 'in all'}"
                f" (at least {risk.MIN_RIGHT} are needed in all and {risk.MIN_PART_RIGHT} in "
                f"each part)"}

    def stage_eval_judge(self) -> dict:
        if self.judge_eval is None:
            return {"skipped": "no judge evaluator given (the CLI runs `judge eval`'s)"}
        p = self.plan
        items = self.qa_items("test", p.n_judge_eval, 0)
        opens = [it.prompt for it in self.open_items(self.creative_path,
                                                     max(1, p.n_creative_eval // 2))]
        res = self.judge_eval(self.model, self.tok, items, creativity=0.5,
                              max_new_tokens=p.judge_max_new_tokens, batch_size=p.batch_size,
                              judge=str(self.judge_out), seed=0,
                              policy={"use_abstain": False}, open_prompts=opens)
        d = res["details"]
        keep = ("n", "judge_auroc", "judge_ece", "wrong_rate_without", "wrong_rate_with",
                "flip_rate", "abstain_rate")
        return {**{k: res[k] for k in keep},
                **{k: d.get(k) for k in ("right_rate_without", "right_rate_with",
                                         "right_kept_rate", "verdicts", "signal_auroc",
                                         "open")},
                "latency_ratio": res["latency_ratio"], "creativity": 0.5,
                "max_new_tokens": p.judge_max_new_tokens}

    def stage_card(self) -> dict:
        from tigerdecode.training.fit_card import render_card

        done = {s: json.loads((self.work / "done" / f"{s}.json").read_text())
                for s in STAGES[1:-1]}
        heads_metrics = json.loads((self.work / "heads" / "metrics.json").read_text())
        judge_metrics = json.loads((self.work / "judge" / "metrics.json").read_text())
        fit_info = {"plan": self.plan.to_dict(), "command": self.req.command,
                    "model": self.req.model, "fingerprint": self.fp.to_dict(),
                    "timings": {s: done[s].get("seconds") for s in done}}
        heads_metrics["evaluations"] = {**heads_metrics.get("evaluations", {}),
                                        "fit_test_relations": done["eval-heads"]["heads"]}
        heads_metrics["fit"] = fit_info
        bars = done["bars"].get("policy")
        if bars:  # generation with these heads uses them by default (api.head_defaults)
            heads_metrics["policy"] = bars
            heads_metrics["policy_source"] = (
                f"tigerdecode fit: policy risk on {done['bars']['n_items']} validation-relation "
                f"answers at creativity 0, error budget {done['bars']['budget']}")
        judge_metrics["evaluations"] = {**judge_metrics.get("evaluations", {}),
                                        "fit_test_relations": done["eval-heads"]["judge"],
                                        "fit_end_to_end": done["eval-judge"]}
        card = render_card(self.req, self.plan, self.fp, self.tok, done, heads_metrics,
                           self.out, self.judge_out)
        install(self.work / "heads", self.out, {"metrics.json": heads_metrics,
                                                "MODEL_CARD.md": card})
        install(self.work / "judge", self.judge_out, {
            "metrics.json": judge_metrics,
            "MODEL_CARD.md": f"# Judge for {self.req.model}\n\nTrained by `tigerdecode fit` "
                             f"beside the heads in `{self.out}`; see its MODEL_CARD.md.\n"})
        return {"heads": str(self.out), "judge": str(self.judge_out)}


def install(src: Path, dest: Path, replace: dict) -> None:
    """Copy checkpoint ``src`` to ``dest`` atomically, with files of ``replace`` (name ->
    JSON-able object or text) written instead of or beside the copied ones."""
    from tigerdecode.fsutil import atomic_dir

    with atomic_dir(dest) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in replace:
                shutil.copyfile(f, tmp / f.name)
        for name, obj in replace.items():
            text = obj if isinstance(obj, str) else json.dumps(obj, indent=2)
            (tmp / name).write_text(text, encoding="utf-8")


def remove_partial_files(roots: list[Path]) -> int:
    """Delete the temp files and folders a failed write left under ``roots`` (names with
    ``.tmp``: the feature store's shards, checkpoints' temp dirs, JSON temps)."""
    n = 0
    for root in roots:
        if not root.is_dir():
            continue
        for p in sorted(root.rglob(".*tmp*"), reverse=True):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            n += 1
    return n


def _outputs(heads_dir: Path) -> list[str]:
    return json.loads((heads_dir / "config.json").read_text())["head"]["outputs"]


def _available_memory() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _nominal_throughput(hidden: int) -> Throughput:
    """For the progress bar of an unmeasured plan (--quick or no budget): the default model's
    speed on a 2-core CPU. Only the ETA depends on it."""
    return Throughput(decode_s_per_token=1 / 150, sample_s_per_token=1 / 100,
                      reencode_s_per_answer=0.01, forms_per_fact=3.0, hidden_size=hidden)


def fit(req: FitRequest, *, model=None, tokenizer=None, judge_eval=None, log=print,
        on_unit=None, dry_run: bool = False) -> dict:
    """Run (or resume) a fit; returns where the heads, judge and work went and each stage's
    summary. ``judge_eval``: the function behind ``tigerdecode judge eval`` (the CLI passes it;
    without it the end-to-end judge evaluation is skipped). ``on_unit(stage, done, total)``
    is called after every finished data-build unit. ``dry_run``: only choose and say the plan."""
    if req.budget_minutes is not None and req.quick:
        raise FitError("give --quick or --budget-minutes, not both")
    if req.budget_minutes is not None and not req.budget_minutes > 0:
        raise FitError(f"--budget-minutes must be a positive number of minutes, got "
                       f"{req.budget_minutes}")
    t_start = time.perf_counter()
    if model is None:
        from tigerdecode.model.load import load_model

        model, tokenizer = load_model(req.model)
    return Fit(req, model, tokenizer, judge_eval=judge_eval, log=log,
               on_unit=on_unit).run(t_start, dry_run=dry_run)
