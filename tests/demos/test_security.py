"""No client-supplied string reaches the server's file system.

Every event handler of the app is driven over raw HTTP (as a hostile client would, bypassing
gradio_client's own upload step) with hostile strings in every text and file slot: absolute
paths, ``..`` sequences, a symlink pointing outside, NUL bytes, 1 MB strings. An audit hook
records every file the server process opens, lists, writes, renames or removes meanwhile. The
test asserts that nothing outside the app's own data is touched, that no response carries the
content of a file outside it, and that a path gets the same response whether or not it exists
(no existence oracle): each path is sent once with its target present and once with it gone.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

FD = {"_type": "gradio.FileData"}
RESULT_ROWS = [{"method": "tigerdecode", "setting": 0.2, "error_rate": 0.3, "distinct_2": 0.5}]
CANARY = "CANARY-7f3a91"
# Audit events that name a path (first argument) and what they do with it.
READS = {"open", "os.listdir", "os.scandir", "shutil.copyfile", "shutil.copytree"}
WRITES = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link",
          "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree", "shutil.move"}
_events: list[tuple[str, str, bool]] | None = None  # (event, path, writes) while recording
_paused = False  # the test's own file work (toggling a canary) is not the server's


def _hook(event, args):
    if _events is None or _paused or (event not in READS and event not in WRITES):
        return
    try:
        path = args[0]
        if isinstance(path, int):
            return
        path = os.fsdecode(os.fspath(path))
        writes = event in WRITES
        if event == "open":
            mode, flags = (args[1] or ""), (args[2] or 0)
            writes = any(c in str(mode) for c in "wax+") or bool(
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
        if event == "os.rename" and len(args) > 1:  # the destination is written too
            _events.append((event, os.fsdecode(os.fspath(args[1])), True))
        _events.append((event, path, writes))
    except Exception:  # noqa: BLE001 - an audit hook must never raise
        pass


_hooked = False


def _install_hook():
    """Once per process (an audit hook cannot be removed; it records only while asked to)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_hook)
        _hooked = True


def _under(path: str, roots) -> bool:
    for p in {os.path.abspath(path), os.path.realpath(path)}:
        for r in roots:
            r = os.path.realpath(r)
            if p == r or p.startswith(r.rstrip("/") + "/"):
                return True
    return False


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The app's own data dir (its launch results file) and a dir outside it holding canaries:
    a valid results file and a passwd-like file, each reachable as an absolute path, a ``..``
    path, a path relative to the working directory and a symlink inside the app's dir."""
    base = tmp_path_factory.mktemp("security")
    app_dir, outside = base / "app", base / "outside"
    app_dir.mkdir()
    outside.mkdir()
    (app_dir / "results.json").write_text(json.dumps({"rows": RESULT_ROWS}))
    canaries = {
        "results": (outside / "secret.json", json.dumps({"rows": [
            {"method": f"tigerdecode-{CANARY}", "setting": 0.5, "error_rate": 0.1}]})),
        "passwd": (outside / "passwd", f"root:x:0:0:{CANARY}:/root:/bin/sh\n"),
    }
    for p, text in canaries.values():
        p.write_text(text)
    for name, (p, _) in canaries.items():
        (app_dir / f"link-{name}.json").symlink_to(p)
    return {"app": app_dir, "outside": outside, "canaries": canaries,
            "text": {p: text for p, text in canaries.values()}}


@pytest.fixture(scope="module")
def served(demo_backend, places):
    from tigerdecode.demos.app import build_app, launch

    _install_hook()
    app = build_app(demo_backend, results_path=places["app"] / "results.json")
    launch(app, host="127.0.0.1", port=None, block=False)
    yield app, app.local_url.rstrip("/")
    app.close()


def call(base: str, fn_index: int, data: list, timeout: float = 120) -> str:
    """One event as the browser sends it (queue/join, then the SSE stream); the final message
    as canonical JSON text, or the HTTP status and body when the join is refused."""
    session = uuid.uuid4().hex[:11]
    with httpx.Client(base_url=base, timeout=timeout) as http:
        r = http.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
            "trigger_id": None})
        if r.status_code != 200:
            return f"HTTP {r.status_code}: {r.text}"
        with http.stream("GET", "/gradio_api/queue/data",
                         params={"session_hash": session}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") in ("process_completed", "unexpected_error"):
                    msg.pop("event_id", None)
                    return json.dumps(msg, sort_keys=True)
    return "no answer"


def _kind(block) -> str:
    import gradio as gr

    if isinstance(block, gr.State):
        return "state"
    if isinstance(block, gr.File | gr.UploadButton | gr.Image | gr.Audio | gr.Video):
        return "file"
    if isinstance(block, gr.Textbox | gr.Dropdown | gr.Code | gr.Markdown | gr.Radio):
        return "text"
    return "other"


def _plain(block):
    """A harmless value for a non-text slot (smallest slider value keeps generations short)."""
    import gradio as gr

    if isinstance(block, gr.Slider):
        return block.minimum
    if isinstance(block, gr.Number):
        return 1
    if isinstance(block, gr.Checkbox):
        return False
    return None


def slots(app):
    """(fn_index, name, input blocks, slot index) for every text or file input of every event
    (named or not: a browser can send any of them)."""
    out = []
    for i, fn in app.fns.items():
        kinds = [_kind(b) for b in fn.inputs]
        name = fn.api_name or getattr(fn.fn, "__name__", str(i))
        out += [(i, name, fn.inputs, j) for j, k in enumerate(kinds) if k in ("text", "file")]
    return out


def payloads(kind: str, s: str) -> list:
    if kind == "text":
        return [s]
    # A file reference as gradio's client sends one, one without the marker gradio checks for,
    # and a bare string.
    return [{"path": s, "orig_name": "r.json", "meta": FD}, {"path": s}, s]


def _data(inputs, j, value):
    """``value`` in slot ``j``; empty text, no file and harmless values elsewhere."""
    other = {"text": "", "file": None, "state": None}
    return [value if k == j else other.get(_kind(b), _plain(b)) for k, b in enumerate(inputs)]


def _normal(text: str) -> str:
    """Drop what differs between two identical calls (timings, cache hashes, ports)."""
    return re.sub(r"\d+", "#", text)


def _outside_touches(events, places) -> list[str]:
    forbidden = [places["outside"], "/etc", os.path.expanduser("~/.ssh"),
                 *(places["app"] / f"link-{n}.json" for n in places["canaries"])]
    return sorted({f"{e} {p[:120]}" for e, p, _ in events if _under(p, forbidden)})


def _foreign_writes(events) -> list[str]:
    from gradio.utils import get_upload_folder

    own = [get_upload_folder(), *Path(tempfile.gettempdir()).glob("tigerdecode-demo-*")]
    return sorted({f"{e} {p[:120]}" for e, p, w in events
                   if w and not _under(p, own) and "__pycache__" not in p})


def _gist(text: str) -> str:
    """The start of what the user would see (the first output), for failure messages."""
    try:
        msg = json.loads(text)
        out = msg["output"].get("data") or msg["output"]
        return repr(out[0] if isinstance(out, list) and out else out)[:150]
    except (ValueError, KeyError, TypeError, AttributeError):
        return repr(text[:150])


def _leak(text: str) -> str | None:
    """What a response must never carry: a canary's content or a stack trace."""
    for needle in (CANARY, "root:x:0:0", "Traceback"):
        if needle in text:
            i = text.index(needle)
            return f"{needle!r} in ...{text[max(0, i - 100):i + 60]!r}"
    return None


def _hostile_fixed(places) -> list[str]:
    secret = places["canaries"]["results"][0]
    return ["/etc/passwd", "../" * 20 + "etc/passwd", "/etc/passwd\x00.json", "\x00",
            "a\x00/../../etc/passwd", "file:///etc/passwd", "http://127.0.0.1:1/etc/passwd",
            "~/.ssh/id_rsa", "/etc",
            str(places["outside"]), str(places["outside"] / "pwned.json"),
            "../" * 20 + str(places["outside"] / "pwned.json").lstrip("/"),
            str(secret) + "/../secret.json", "A" * 1_000_000, "/" + "x/" * 300_000]


def _toggled(places):
    """(label, path text, canary file) for each path form of each canary."""
    out = []
    for name, (p, _) in places["canaries"].items():
        out += [(f"{name}:absolute", str(p), p),
                (f"{name}:dotdot", "../" * 30 + str(p).lstrip("/"), p),
                (f"{name}:relative", os.path.relpath(p), p),
                (f"{name}:symlink", str(places["app"] / f"link-{name}.json"), p)]
    return out


def _toggle(target: Path, text: str | None) -> None:
    """Remove the canary (``text`` None) or put it back, unrecorded."""
    global _paused
    _paused = True
    try:
        target.unlink() if text is None else target.write_text(text)
    finally:
        _paused = False


def test_every_endpoint_resists_hostile_paths(served, places):
    global _events
    app, base = served
    found = slots(app)
    assert found, "no text or file inputs found; the sweep would prove nothing"
    before = sorted(os.listdir(places["outside"]))
    leaks, oracle = [], []
    _events = []
    try:
        for i, name, inputs, j in found:
            kind = _kind(inputs[j])
            for s in _hostile_fixed(places):
                for value in payloads(kind, s):
                    if leak := _leak(call(base, i, _data(inputs, j, value))):
                        leaks.append(f"{name}[{j}] {s[:60]!r}: {leak}")
            for label, s, target in _toggled(places):
                text = places["text"][target]
                for value in payloads(kind, s):
                    present = call(base, i, _data(inputs, j, value))
                    _toggle(target, None)
                    try:
                        absent = call(base, i, _data(inputs, j, value))
                    finally:
                        _toggle(target, text)
                    if leak := _leak(present):
                        leaks.append(f"{name}[{j}] {label}: {leak}")
                    if _normal(present) != _normal(absent):
                        oracle.append(f"{name}[{j}] {label}: present -> {_gist(present)}"
                                      f"\n    absent -> {_gist(absent)}")
        events = list(_events)
    finally:
        _events = None
    problems = {
        "responses carry outside content or a traceback": leaks,
        "responses reveal whether a path exists": oracle,
        "the server touched files outside its own data": _outside_touches(events, places),
        "the server wrote outside its own data": _foreign_writes(events),
        "files appeared outside": sorted(set(os.listdir(places["outside"])) - set(before)),
    }
    report = [f"{what} ({len(items)}):\n  " + "\n  ".join(items[:6])
              for what, items in problems.items() if items]
    assert not report, "\n".join(report)


def test_gradio_file_routes_do_not_serve_or_reveal_outside_files(served, places):
    """Gradio's own file routes: the launch results file and the canaries are not served,
    and a present file answers as a missing one does."""
    _, base = served
    secret, text = places["canaries"]["results"]
    with httpx.Client(base_url=base, timeout=30) as http:
        for route in ("/gradio_api/file=", "/gradio_api/file/"):
            for target in (str(secret), str(places["app"] / "results.json"), "/etc/passwd"):
                r = http.get(route + target)
                assert r.status_code in (403, 404) and CANARY not in r.text
            present = http.get(route + str(secret))
            secret.unlink()
            try:
                absent = http.get(route + str(secret))
            finally:
                secret.write_text(text)
            assert (present.status_code, present.text) == (absent.status_code, absent.text)


def test_upload_route_keeps_files_in_gradio_cache(served, places):
    """Gradio's upload route (what the results upload uses) files whatever name a client gives
    under its own cache folder, never at that name."""
    from gradio.utils import get_upload_folder

    _, base = served
    names = ["../" * 12 + str(places["outside"] / "pwned.json").lstrip("/"),
             str(places["outside"] / "pwned.json"), "..", "x\\..\\..\\pwned.json"]
    with httpx.Client(base_url=base, timeout=30) as http:
        for name in names:
            r = http.post("/gradio_api/upload", files={"files": (name, b'{"rows": []}')})
            if r.status_code == 200:
                (stored,) = r.json()
                assert _under(stored, [get_upload_folder()]), stored
    assert sorted(os.listdir(places["outside"])) == ["passwd", "secret.json"]
