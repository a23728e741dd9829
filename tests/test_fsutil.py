"""Atomic writes: a temp beside the target renamed into place; the temps a killed writer left
are swept by the next write of the same target, those of live writers are not."""

import os
import subprocess
import sys

from tigerdecode.fsutil import atomic_dir, atomic_write, sweep_stale, temp_prefix


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_write_sweeps_what_a_dead_writer_left(tmp_path):
    target = tmp_path / "ckpt"
    dead = tmp_path / f".ckpt.tmp-{dead_pid()}-abc"
    (dead / "x").mkdir(parents=True)
    dead_file = tmp_path / f".ckpt.tmp-{dead_pid()}-def"
    dead_file.write_text("half")
    live = tmp_path / f"{temp_prefix(target)}zzz"  # this process: alive
    live.mkdir()
    other = tmp_path / ".other.tmp-1-abc"  # another target's temp: not ours to touch
    other.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ckpt", live.name, other.name])
    assert (target / "a.json").read_text() == "{}"


def test_atomic_dir_replaces_and_atomic_write_writes(tmp_path):
    target = tmp_path / "d"
    for text in ("1", "2"):
        with atomic_dir(target) as tmp:
            (tmp / "f").write_text(text)
    assert (target / "f").read_text() == "2" and os.listdir(tmp_path) == ["d"]
    out = atomic_write(tmp_path / "sub" / "r.json", '{"a": 1}')
    assert out.read_text() == '{"a": 1}' and os.listdir(out.parent) == ["r.json"]
    assert sweep_stale(tmp_path / "missing-folder" / "x") == []
