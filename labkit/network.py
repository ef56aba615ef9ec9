"""Whether labkit may download (the OxFlower17 archive, ImageNet weights): ``$LABKIT_OFFLINE``."""
from __future__ import annotations

import os


def offline() -> bool:
    """True when ``$LABKIT_OFFLINE`` is 1, true or yes (CI, a machine without internet)."""
    return os.environ.get("LABKIT_OFFLINE", "").strip().lower() in {"1", "true", "yes"}
