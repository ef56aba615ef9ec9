"""Where labkit keeps what it makes, each place set by one environment variable:

    $LABKIT_DATA_DIR      the archive and its extracted images (``labkit.data``); default: the
                          checkout's ``data/``, else ``~/labkit_data``
    $LABKIT_OUTPUTS_DIR   run folders: records, best models, training backups; default: the
                          checkout's ``outputs/``, else ``~/labkit_outputs``
    $LABKIT_CACHE_DIR     the decoded images (``labkit.data.decode``); default: ``<data dir>/cache``

The three are independent: moving the data does not move the runs. On Colab,
``labkit.colab.keep_on_drive()`` points the outputs and the cache at Google Drive.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_VAR, OUTPUTS_VAR, CACHE_VAR = "LABKIT_DATA_DIR", "LABKIT_OUTPUTS_DIR", "LABKIT_CACHE_DIR"


def checkout() -> Path | None:
    """The folder labkit was installed from in place (``pip install -e``, a clone), if any."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def _from_env(var: str) -> Path | None:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser().resolve() if value else None


def data_dir() -> Path:
    """``$LABKIT_DATA_DIR``, else the checkout's ``data/``, else ``~/labkit_data``."""
    root = checkout()
    return _from_env(DATA_VAR) or (root / "data" if root else Path.home() / "labkit_data")


def outputs_dir() -> Path:
    """``$LABKIT_OUTPUTS_DIR``, else the checkout's ``outputs/``, else ``~/labkit_outputs``."""
    root = checkout()
    return _from_env(OUTPUTS_VAR) or (root / "outputs" if root else Path.home() / "labkit_outputs")


def cache_dir(data_dir: Path) -> Path:
    """``$LABKIT_CACHE_DIR``, else ``<data_dir>/cache``."""
    return _from_env(CACHE_VAR) or Path(data_dir) / "cache"
