"""Keeping an untrusted notebook inside its folder while it is graded.

``confine(root, log_path)`` installs a Python audit hook (PEP 578) in the process that runs a
submission (its Jupyter kernel). From then on, any attempt to create, write, delete, rename or
link a file outside ``root``, or to start a program, raises ``PermissionError`` and is written
to ``log_path``, which the grader reads afterwards. Audit hooks cannot be removed once added.

This is a guard against accidents and casual escapes (a student's ``open("/home/...", "w")``,
``shutil.rmtree("..")``, ``os.system``), not a security boundary against a determined attacker:
native code (ctypes, C extensions) is not audited. Grading runs it inside the OS sandbox
(``labkit.grading.box``, bubblewrap), and alone only where that cannot start, saying so.
"""
from __future__ import annotations

import os
import sys

#: audit events that change the file system, and which of their arguments are paths
_PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.link": (0, 1), "os.symlink": (1,), "os.chmod": (0,), "os.chown": (0,),
    "os.truncate": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
    "os.mkfifo": (0,), "os.mknod": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
    "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.move": (1,),
    "shutil.make_archive": (0,), "shutil.unpack_archive": (1,), "shutil.chown": (0,),
}
#: audit events that start another program
_PROCESS_EVENTS = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile", "pty.spawn"}
#: programs that libraries start on their own (matplotlib asks fontconfig for the font list)
ALLOWED_PROGRAMS = {"fc-list", "fc-match"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _is_write(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(ch in mode for ch in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def confine(root: str | os.PathLike, log_path: str | os.PathLike) -> None:
    """Forbid, for the rest of this process, file changes outside ``root`` and new programs."""
    root = os.path.realpath(root)
    sys.dont_write_bytecode = True  # imports would otherwise cache .pyc files next to the libraries
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # opened before the hook exists
    inside = root + os.sep

    def allowed(path) -> bool:
        if isinstance(path, int):  # an already open file descriptor: was checked when opened
            return True
        try:
            full = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return full == root or full.startswith(inside) or full == os.devnull

    def refuse(what: str) -> None:
        log.write(what + "\n")
        raise PermissionError(f"labkit grading: {what}. A graded notebook may only write inside "
                              "its own folder and may not start programs.")

    def hook(event: str, args) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if path is not None and _is_write(mode, flags) and not allowed(path):
                refuse(f"write outside the submission folder: {os.fsdecode(path)}")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not allowed(args[i]):
                    refuse(f"{event} outside the submission folder: {os.fsdecode(args[i])}")
        elif event == "subprocess.Popen":
            program = os.path.basename(os.fsdecode(args[0] or "")) if args else ""
            argv = args[1] if len(args) > 1 else None
            if not program and argv:
                first = argv if isinstance(argv, (str, bytes)) else next(iter(argv), "")
                program = os.path.basename(os.fsdecode(first).split()[0]) if first else ""
            if program not in ALLOWED_PROGRAMS:
                refuse(f"started a program: {program or argv!r}")
        elif event in _PROCESS_EVENTS:
            refuse(f"started a program ({event}): {args[0] if args else ''!r}")

    sys.addaudithook(hook)


def violations(log_path: str | os.PathLike) -> list[str]:
    """What ``confine``'s log recorded (an empty list when the file is missing)."""
    try:
        with open(log_path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return []
