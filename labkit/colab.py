"""Colab runs that survive a disconnect: run folders and decoded images on Google Drive.

A Colab runtime's disk is wiped when it disconnects or is recycled. The setup cell calls
``labkit.colab.keep_on_drive()``: once the student allows Drive access, labkit's run folders
(records, best models, the per-epoch training backups) and the decoded-image cache go to
``MyDrive/labkit/`` instead. A run interrupted by a disconnect then resumes from its last
finished epoch, and lab 07 finds the runs of labs 02-06, whichever runtime trained them.
Without Drive it warns once and carries on with the runtime's disk.

Anywhere else, ``keep_in(folder)`` does the same with any folder (a network drive, a USB disk).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from labkit import places
from labkit.startup import LabkitWarning

DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "labkit"          # MyDrive/labkit/{outputs,cache}
_warned = False


def on_colab() -> bool:
    return "google.colab" in sys.modules


def keep_in(folder: str | os.PathLike) -> Path:
    """Keep run folders in ``folder/outputs`` and decoded images in ``folder/cache`` from now on
    (it sets ``$LABKIT_OUTPUTS_DIR`` and ``$LABKIT_CACHE_DIR`` for this process and the ones it
    starts). Returns ``folder``. The data archive and its extracted images stay where they are."""
    root = Path(folder).expanduser().resolve()
    for name, var in (("outputs", places.OUTPUTS_VAR), ("cache", places.CACHE_VAR)):
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(root / name)
    return root


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"{reason} Runs are kept on this runtime's disk only: a disconnect loses them "
                      "(run the setup cell again and allow Google Drive to keep them).", LabkitWarning, stacklevel=3)


def keep_on_drive(folder: str = DRIVE_FOLDER, mount_point: str = DRIVE_MOUNT) -> Path | None:
    """On Colab: mount Google Drive (Colab asks the student for permission) and keep labkit's
    run folders and cache in ``MyDrive/<folder>/``. Returns that folder, or ``None`` (with one
    warning) when Drive is refused or cannot be mounted. Off Colab it does nothing and returns
    ``None``: runs are on the machine's own disk already."""
    if not on_colab():
        return None
    from google.colab import drive  # only on Colab

    try:
        drive.mount(mount_point)
    except Exception as err:  # refused, timed out, no account: Colab raises several kinds
        _warn_once(f"Google Drive was not mounted ({type(err).__name__}: {err}).")
        return None
    mydrive = Path(mount_point) / "MyDrive"
    if not mydrive.is_dir():
        _warn_once(f"Google Drive is mounted but {mydrive} is missing.")
        return None
    root = keep_in(mydrive / folder)
    print(f"[labkit.colab] run folders and decoded images are kept on Google Drive in {root}")
    return root
