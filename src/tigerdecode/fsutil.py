"""Writing files and directories atomically: fill a temp beside the target, then rename it into
place, so an interrupted write never leaves a half-written checkpoint behind.

A temp carries the writer's process id in its name (``.NAME.tmp-PID-xxxx``). A process killed
with SIGKILL runs no cleanup, so the next write of the same target removes the temps of writers
that are no longer alive (``sweep_stale``): a rerun after ``kill -9`` leaves no litter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temps for ``path``."""
    return f".{path.name}.tmp-{os.getpid()}-"


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove the temps beside ``path`` left by writers that died (their process is gone);
    returns what was removed. Temps of live writers (another process writing the same target
    right now) are left alone."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for p in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        pid = p.name[len(f".{path.name}.tmp-"):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def make_temp_dir(path: str | Path) -> Path:
    """A fresh temp directory beside ``path`` (after sweeping dead writers' temps)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a fresh temp directory; on success it replaces ``path`` (permissions as the umask
    gives ordinary files and folders — ``mkdtemp`` and safetensors make theirs private)."""
    path = Path(path)
    tmp = make_temp_dir(path)
    try:
        yield tmp
        umask = _umask()
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        if path.exists():
            # moved aside under a temp name first: a kill between the two steps leaves a temp
            # that the next write sweeps, never a target that is half deleted
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))
            path.rename(old / "old")
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Yield a temp file path beside ``path``; on success it replaces ``path`` (permissions as
    the umask gives; ``mkstemp`` alone makes the file private), on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temp file beside it and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)
