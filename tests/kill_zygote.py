"""Kill -9 harness: a process that imports torch, transformers and tigerdecode once, then forks one
child per job run, so a run costs the job's own time rather than a fresh interpreter's.

Run as ``python tests/kill_zygote.py``; it reads one JSON command a line on stdin and answers one
JSON line on stdout. A command names a job (``argv``: a ``tigerdecode`` command line, or ``call``:
``"module:function"`` with ``args``), a ``log`` file for the child's output, a ``watch`` folder
and at most one kill:

- ``{"kill_event": k}``: the child sends itself SIGKILL just before its k-th filesystem change
  under ``watch`` (an ``open`` for writing, a rename/replace, a remove, a mkdir, an rmtree), seen
  through an audit hook (``sys.addaudithook``) — writes done inside native code (safetensors)
  are reached by the next event;
- ``{"kill_after": s}``: the zygote sends the child SIGKILL ``s`` seconds after it started.

The answer: ``{"exit": int | None, "signal": int | None, "events": n, "seconds": t}``, where
``events`` counts the changes the child made (reported when it finishes; absent when killed).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGE_EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree",
                 "os.truncate", "os.link", "os.symlink"}


def _under(p, root: str) -> bool:
    if isinstance(p, int):
        return False
    try:
        return os.path.abspath(os.fsdecode(p)).startswith(root)
    except (TypeError, ValueError):
        return False


def _install_counter(root: str, kill_at: int | None) -> list[int]:
    count = [0]

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if mode is not None:
                writes = any(c in mode for c in "wax+")
            else:
                writes = bool(flags & WRITE_FLAGS)
            if not (writes and _under(path, root)):
                return
        elif event in CHANGE_EVENTS:
            if not _under(args[0], root):
                return
        else:
            return
        count[0] += 1
        if kill_at is not None and count[0] >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    return count


def _child(cmd: dict, result_fd: int) -> None:
    import torch

    torch.set_num_threads(1)
    for k, v in cmd.get("env", {}).items():
        os.environ[k] = v
    log = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if cmd.get("cwd"):
        os.chdir(cmd["cwd"])
    count = _install_counter(os.path.abspath(cmd["watch"]), cmd.get("kill_event"))
    code = 0
    try:
        if "argv" in cmd:
            from tigerdecode.cli import main

            try:
                main.main(cmd["argv"], prog_name="tigerdecode", standalone_mode=False)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        else:
            mod, fn = cmd["call"].split(":")
            getattr(importlib.import_module(mod), fn)(*cmd.get("args", []))
    except BaseException as e:  # noqa: BLE001 - reported to the test through the exit code
        import traceback

        traceback.print_exception(e)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(result_fd, json.dumps({"events": count[0]}).encode())
    os._exit(code)


def run(cmd: dict) -> dict:
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(cmd, w)
    os.close(w)
    deadline = None if cmd.get("kill_after") is None else t0 + float(cmd["kill_after"])
    limit = t0 + float(cmd.get("timeout", 300))
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.perf_counter()
        if (deadline is not None and now >= deadline) or now >= limit:
            os.kill(pid, signal.SIGKILL)
            deadline = None
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    with os.fdopen(r, "rb") as fh:
        raw = fh.read()
    info = json.loads(raw) if raw else {}
    return {"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "events": info.get("events"), "seconds": seconds}


def convert_default(cache: str, gguf: str) -> None:
    """The default model's cache conversion into ``cache``, with the GGUF conversion replaced by
    writing the tiny fixture model (the atomic-entry logic around it is what is tested)."""
    os.environ["TIGERDECODE_CACHE"] = cache
    import tigerdecode.model.load as models
    from tiny_models import load_tokenizer, save_tiny_model

    models.default_gguf_path = lambda: Path(gguf)
    models._convert_default = lambda dest, _gguf, progress=True: save_tiny_model(
        "llama", load_tokenizer(), dest)
    models.ensure_default_model()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch  # imported once here, shared by every forked child
    import transformers  # noqa: F401

    import tigerdecode.cli  # noqa: F401
    import tiny_models  # noqa: F401

    # what the jobs import lazily, imported once here instead of in every child
    for mod in ("tigerdecode.cli.training", "tigerdecode.cli.judge", "tigerdecode.cli.eval",
                "tigerdecode.cli.quant", "tigerdecode.training.build",
                "tigerdecode.training.train", "tigerdecode.training.judge_train",
                "tigerdecode.eval.runner", "tigerdecode.eval.report", "tigerdecode.quant.io",
                "tigerdecode.api", "tigerdecode.eval.plot"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    # warm what every job touches (transformers' lazy modules, the tokenizer classes, sklearn)
    import sklearn.linear_model  # noqa: F401

    tok = tiny_models.load_tokenizer()
    model = tiny_models.build_tiny_model("llama", tok)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
