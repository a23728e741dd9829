"""Kill -9 and resume, for every long job: SIGKILL a run at a random point, run it again, and the
artefacts equal those of a run never interrupted, with no temp file left behind.

Jobs (each on the tiny fixture model): ``data build``, ``heads train``, ``judge train``,
``eval``, ``quantize`` and the default model's cache conversion (its GGUF conversion replaced by
writing the tiny model, as ``tests/model/test_load.py`` does). The runs happen in children of one
process that imported everything once (``tests/kill_zygote.py``). Half the trials kill a child just
before its k-th filesystem change (k drawn from the reference run's count: every state a file
can be left in), the other half after a random time within the reference run's duration.

``make test`` runs one trial of each kind per job; ``TIGERDECODE_KILL_TRIALS=N`` runs N
(docs/results/kill-resume.md has the long run). The draws are seeded by the job's name, so a
machine repeats the same event trials; time trials land where the clock puts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TRIALS = int(os.environ.get("TIGERDECODE_KILL_TRIALS", "1"))
# The only fields that differ between two runs: wall-clock measurements. heads train records
# train_seconds in metrics.json; eval records tokens_per_s per cell (cells/*.json, results.json,
# results.csv and results.md's column). Every other byte of every file must be equal.
TIMING_KEYS = {"tokens_per_s", "train_seconds"}
TRIAL_LOG: list[dict] = []  # every trial, for the results page (printed at the end)


class Zygote:
    def __init__(self, log: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "kill_zygote.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log.open("w"), text=True, env=env)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the kill harness died"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote") / "zygote.log")
    yield z
    z.close()
    if TRIAL_LOG:
        print("\nkill-resume trials:")
        for t in TRIAL_LOG:
            print(json.dumps(t))


# ---- inputs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, tmp_path_factory, tokenizer):
    """A QA file (half the answers the tiny model gives greedily, so both labels occur), creative
    prompts, and a data build directory (made once, uninterrupted) that the trainers read."""
    from tigerdecode.model.load import load_model
    from tigerdecode.qa.data import QAItem, load_qa, split_topics
    from tigerdecode.qa.labels import token_pieces
    from tigerdecode.qa.prompts import format_prompt
    from tigerdecode.training.build import build_data
    from tigerdecode.training.sampling import Setting, sample_answers

    root = tmp_path_factory.mktemp("kill-inputs")
    model, tok = load_model(str(tiny_model_dir))
    # one topic an item, so the topic split has validation topics (a topic above 5% of the
    # items always trains); right and wrong gold answers alternate within each split
    prompts = [f"The favourite colour of person number {i} is" for i in range(40)]
    res = sample_answers(model, tok, [format_prompt(p) for p in prompts], [1],
                         Setting("greedy"), max_new_tokens=6, seed=0)
    items = [QAItem(prompt=p, answers=["x"], topic=f"t{i}") for i, p in enumerate(prompts)]
    side = {t: s for s, ts in split_topics(items).items() for t in ts}
    seen: dict[str, int] = {}
    qa = root / "qa.jsonl"
    with qa.open("w") as fh:
        for i, (p, r) in enumerate(zip(prompts, res, strict=True)):
            k = seen[side[f"t{i}"]] = seen.get(side[f"t{i}"], -1) + 1
            gold = "".join(token_pieces(tok, r["token_ids"])) if k % 2 == 0 else "zqxj"
            fh.write(json.dumps({"prompt": p, "answers": [gold], "topic": f"t{i}"}) + "\n")
    creative = root / "creative.jsonl"
    creative.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                                ("Write a poem about rain.", "Describe a strange fruit.")))
    data = root / "data"
    trainval = [it for it in load_qa(qa) if side[it.topic] != "test"]
    build_data(model, tok, trainval, data, layers=[2, 4],
               settings=(Setting("greedy"), Setting("t1", 1.0, 0.95)), max_new_tokens=6,
               batch_size=6, progress=False)
    gguf = root / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    return {"model": str(tiny_model_dir), "qa": str(qa), "creative": str(creative),
            "data": str(data), "gguf": str(gguf)}


def job_argv(job: str, inp: dict, out: Path) -> dict:
    """The command for ``job`` writing to ``out`` (what the test compares)."""
    m = ["--model", inp["model"]]
    if job == "data_build":
        return {"argv": ["data", "build", "--qa", inp["qa"], "--out", str(out), "--layers", "2,4",
                         "--settings", "greedy,1.0:0.95", "--max-new-tokens", "6",
                         "--batch-size", "4", "--limit", "8", *m]}
    if job == "heads_train":
        return {"argv": ["heads", "train", "--data", inp["data"], "--out", str(out),
                         "--layers", "2,4", "--kind", "linear", "--max-epochs", "4"]}
    if job == "judge_train":
        return {"argv": ["judge", "train", "--data", inp["data"], "--out", str(out),
                         "--layers", "2,4", "--qa", inp["qa"], *m]}
    if job == "eval":
        return {"argv": ["eval", "--quick", "--heads", "none", "--qa", inp["qa"], "--creative",
                         inp["creative"], "--limit", "4", "--methods",
                         "greedy,temperature,tigerdecode", "--out", str(out), *m]}
    if job == "quantize":
        return {"argv": ["quantize", inp["model"], "--bits", "4", "--group-size", "32",
                         "--out", str(out)]}
    if job == "model_cache":
        return {"call": "kill_zygote:convert_default", "args": [str(out), inp["gguf"]]}
    raise ValueError(job)


JOBS = ("data_build", "heads_train", "judge_train", "eval", "quantize", "model_cache")


# ---- comparing artefacts --------------------------------------------------------------------


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    return obj


def digest_tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file and folder under ``root``; JSON files are hashed
    with their timing fields removed (those are measurements of the run, not its result)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel + "/"] = "dir"
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            try:
                data = json.dumps(_strip_timings(json.loads(data)), sort_keys=True).encode()
            except ValueError:
                pass
        elif p.suffix == ".md" and p.name.startswith("results"):
            data = _drop_timing_column(data.decode()).encode()
        elif p.suffix == ".csv":
            data = _drop_csv_column(data.decode(), "tokens_per_s").encode()
        out[rel] = hashlib.sha256(data).hexdigest()[:16]
    return out


def _drop_csv_column(text: str, name: str) -> str:
    lines = text.splitlines()
    if not lines or name not in lines[0].split(","):
        return text
    i = lines[0].split(",").index(name)
    return "\n".join(",".join(c for j, c in enumerate(ln.split(",")) if j != i) for ln in lines)


def _drop_timing_column(text: str) -> str:
    """A markdown report without its tables' ``tokens_per_s`` column (the only timing)."""
    out, col = [], None
    for ln in text.splitlines():
        cells = ln.split("|")
        if not ln.startswith("|"):
            col = None
        elif col is None and "tokens_per_s" in [c.strip() for c in cells]:
            col = [c.strip() for c in cells].index("tokens_per_s")
        out.append("|".join(c for i, c in enumerate(cells) if i != col) if col is not None
                   else ln)
    return "\n".join(out)


# ---- the trials -----------------------------------------------------------------------------


def run_job(zygote, job, inputs, work: Path, **kill) -> dict:
    out = work / "out"
    cmd = job_argv(job, inputs, out)
    return zygote.run(**cmd, watch=str(work), log=str(work / "log.txt"), **kill,
                      env={"TIGERDECODE_CACHE": str(work / "cache")})


def artefacts(job, work: Path) -> dict:
    """What the job leaves: everything under its output folder (the model cache: the cache)."""
    root = work / "out"
    return digest_tree(root)


@pytest.fixture(scope="module")
def references(zygote, inputs, tmp_path_factory):
    """Each job's uninterrupted run (made when a test first asks for it)."""
    refs = {}

    def get(job):
        if job not in refs:
            work = tmp_path_factory.mktemp(f"ref-{job}")
            r = run_job(zygote, job, inputs, work)
            assert r["exit"] == 0, (work / "log.txt").read_text()[-3000:]
            refs[job] = (r, artefacts(job, work))
        return refs[job]

    return get


def trials(job: str, ref: dict) -> list[dict]:
    rng = random.Random(f"kill-{job}")
    out = []
    for i in range(TRIALS):
        if (i + JOBS.index(job)) % 2 == 0:  # one run of make test: half the jobs each kind
            out.append({"kill_event": rng.randint(1, ref["events"])})
        else:
            out.append({"kill_after": round(rng.uniform(0.02, 1.0) * ref["seconds"], 3)})
    return out


@pytest.mark.parametrize("job", JOBS)
def test_kill_and_resume_gives_the_uninterrupted_result(zygote, inputs, references, job,
                                                       tmp_path):
    ref, ref_files = references(job)
    assert ref["events"] > 0
    for n, kill in enumerate(trials(job, ref)):
        work = tmp_path / f"trial{n}"
        work.mkdir()
        killed = run_job(zygote, job, inputs, work, **kill)
        # a time trial may land after the job ended; it still checks a rerun of a finished job
        assert killed["signal"] == signal.SIGKILL or (
            "kill_after" in kill and killed["exit"] == 0), (work / "log.txt").read_text()[-3000:]
        again = run_job(zygote, job, inputs, work)
        assert again["exit"] == 0, (work / "log.txt").read_text()[-3000:]
        got = artefacts(job, work)
        assert got == ref_files, f"{job} after {kill}: differs from the uninterrupted run"
        stray = [str(p.relative_to(work)) for p in work.rglob("*") if ".tmp" in p.name
                 or ".stale" in p.name]
        assert not stray, f"{job} after {kill}: temp files left: {stray}"
        TRIAL_LOG.append({"job": job, **kill, "killed": killed["signal"] == signal.SIGKILL,
                          "reference_events": ref["events"],
                          "reference_s": round(ref["seconds"], 2)})
        shutil.rmtree(work)
