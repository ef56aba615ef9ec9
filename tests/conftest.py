"""Shared fixtures. Tests never touch the network: LABKIT_OFFLINE=1 for the whole session."""
import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

os.environ["LABKIT_OFFLINE"] = "1"
os.environ.setdefault("LABKIT_PROFILE", "smoke")

REPO = Path(__file__).resolve().parent.parent
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "oxflower17" / "17flowers.tgz"


def real_archive() -> Path:
    """The real 17flowers.tgz: ../shared (CI and developers), or data/ of this checkout."""
    for candidate in (SHARED_ARCHIVE, REPO / "data" / "17flowers.tgz"):
        if candidate.is_file():
            return candidate
    pytest.fail("The real OxFlower17 archive is missing: put 17flowers.tgz in ../shared/data/oxflower17/ or data/.")


def make_jpeg(seed: int, size=(20, 14)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def write_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def pytest_collection_modifyitems(config, items):
    """Long files first: those marked slow as a whole (``pytestmark = pytest.mark.slow``), then
    the notebooks, then the rest, each group in collection order. With ``--dist loadfile`` a
    worker takes the next whole file when it is free, so the short files fill the end and neither
    worker waits long for the other."""
    def rank(item):
        if item.path.suffix == ".ipynb":
            return 1
        module = item.getparent(pytest.Module)
        marks = getattr(module.obj, "pytestmark", []) if module is not None else []
        marks = marks if isinstance(marks, list) else [marks]
        return 0 if any(mark.name == "slow" for mark in marks) else 2

    items.sort(key=rank)   # stable: the order within each group stays


@pytest.fixture(scope="session")
def synthetic_archive(tmp_path_factory) -> Path:
    """A tiny 17flowers.tgz: 1,360 small random JPEGs with the official names and layout."""
    files = {f"jpg/image_{i:04d}.jpg": make_jpeg(i) for i in range(1, 1361)}
    files["jpg/files.txt"] = "\n".join(f"image_{i:04d}.jpg" for i in range(1, 1361)).encode()
    return write_tgz(tmp_path_factory.mktemp("synthetic") / "17flowers.tgz", files)


@pytest.fixture
def synthetic_data_dir(tmp_path, synthetic_archive) -> Path:
    shutil.copy(synthetic_archive, tmp_path / "17flowers.tgz")
    return tmp_path


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory) -> Path:
    """A data directory holding (a link to) the real archive, extracted once per session."""
    import labkit.data

    root = tmp_path_factory.mktemp("real-data")
    (root / "17flowers.tgz").symlink_to(real_archive())
    labkit.data.ensure_images(root)
    return root
