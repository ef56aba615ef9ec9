"""OxFlower17's files: download, verify, extract, split, and an index of every image.

Nilsback & Zisserman, "A Visual Vocabulary for Flower Classification", CVPR 2006.
17 classes x 80 images = 1,360 JPEGs; image ``image_NNNN.jpg`` has label ``(NNNN - 1) // 80``.

Where the files live (the *data directory*): the ``data_dir`` argument, else ``$LABKIT_DATA_DIR``,
else the repository's ``data/`` folder (``~/labkit_data`` when labkit is not run from a checkout).
Files placed there by hand are used as they are, with no network access at all; when labkit
downloads the archive it fetches ``datasplits.mat`` with it.

Splits: the official ``datasplits.mat`` holds three partitions (``trn k``/``val k``/``tst k``,
680/340/340 images). Without it (and no way to download it) labkit uses its own documented
split of the same sizes, ``labkit-stratified``: for partition k, every class's 80 images are
shuffled with ``numpy.random.default_rng(k)``; the first 40 train, the next 20 validate and the
last 20 test. That substitution is announced once and recorded by name in every run record.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import network, places

ARCHIVE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
ARCHIVE_MD5 = "b59a65d8d1a99cd66944d474e1289eab"
ARCHIVE_NAME = "17flowers.tgz"
SPLITS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/datasplits.mat"
SPLITS_MD5 = "4828cddfd0d803c5abbdebcb1e148a1e"
SPLITS_NAME = "datasplits.mat"
IMAGES_DIRNAME = "oxflower17"   # the extracted archive: <data_dir>/oxflower17/jpg/image_0001.jpg
READY_MARKER = ".labkit-ready"  # written last inside the extraction folder, before it is renamed

NUM_CLASSES = 17
IMAGES_PER_CLASS = 80
NUM_IMAGES = NUM_CLASSES * IMAGES_PER_CLASS
CLASS_NAMES = (
    "daffodil", "snowdrop", "lily of the valley", "bluebell", "crocus", "iris", "tiger lily",
    "tulip", "fritillary", "sunflower", "daisy", "colt's foot", "dandelion", "cowslip",
    "buttercup", "windflower", "pansy",
)
SPLIT_SIZES = {"train": 680, "val": 340, "test": 340}
OFFICIAL_SPLIT = "official datasplits.mat"
FALLBACK_SPLIT = "labkit-stratified (40/20/20 per class, numpy default_rng(partition))"
PARTITIONS = (1, 2, 3)

_IMAGE_NAME = re.compile(r"^image_(\d{4})\.jpg$")
_announced: set[str] = set()
_checked_image_dirs: set[Path] = set()
_failed_downloads: dict[Path, str] = {}  # optional files tried once per process


class DataError(RuntimeError):
    """The data set is missing, damaged or cannot be fetched; the message says what to do."""


def _announce(key: str, message: str) -> None:
    """Print a notice once per process (students should see it, but not a hundred times)."""
    if key not in _announced:
        _announced.add(key)
        print(f"[labkit.data] {message}", flush=True)


def _offline(download: bool | None) -> bool:
    if download is not None:
        return not download
    return network.offline()


def default_data_dir() -> Path:
    """``$LABKIT_DATA_DIR``, else the checkout's ``data/``, else ``~/labkit_data`` (``labkit.places``)."""
    return places.data_dir()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()


def label_of(image_id: int) -> int:
    """The class of ``image_NNNN.jpg``: 80 consecutive images per class."""
    if not 1 <= image_id <= NUM_IMAGES:
        raise ValueError(f"OxFlower17 image ids run from 1 to {NUM_IMAGES}, got {image_id}")
    return (image_id - 1) // IMAGES_PER_CLASS


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- download

def _progress(size: int):
    """A progress bar in MB (Keras' ``Progbar``: one line in a terminal and in a notebook)."""
    from keras.utils import Progbar

    return Progbar(round(size / 2**20, 1) if size else None, unit_name="MB", interval=0.5)


def _download(url: str, dest: Path, md5: str, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``; only a verified file gets its final name."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"[labkit.data] downloading {url} -> {dest}", flush=True)
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            size = int((getattr(response, "headers", None) or {}).get("Content-Length") or 0)
            progress = _progress(size)
            done = 0
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
                done += len(block)
                progress.update(round(done / 2**20, 1))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        raise DataError(
            f"Could not download {url} ({err}). If this machine is offline, download the file "
            f"on one that is online and copy it to {dest.parent}/ (or point LABKIT_DATA_DIR at "
            "the folder that holds it)."
        ) from err
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DataError(
            f"The download of {url} is corrupt (md5 {digest.hexdigest()}, expected {md5}); "
            "nothing was kept. Run again to retry."
        )
    part.replace(dest)
    return dest


# --------------------------------------------------------------------------- extract

def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Regular files and folders with relative, non-escaping names; anything else is refused."""
    members = []
    for m in tar.getmembers():
        name = m.name
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise DataError(
                f"{archive} contains the unsafe path {name!r} (absolute or with '..'); refusing to "
                "extract it. Delete the file and download the official archive "
                f"({ARCHIVE_URL})."
            )
        if not (m.isfile() or m.isdir()):
            raise DataError(
                f"{archive} contains {name!r}, a link or special file; refusing to extract it. "
                f"Delete the file and download the official archive ({ARCHIVE_URL})."
            )
        members.append(m)
    return members


def _find_images(root: Path) -> Path | None:
    """The folder that holds ``image_0001.jpg`` (``jpg/`` in the official layout)."""
    for candidate in (root / "jpg", root, *sorted(p for p in root.glob("*/jpg")), *sorted(root.glob("*"))):
        if (candidate / "image_0001.jpg").is_file():
            return candidate
    return None


def validate_images(images_dir: Path, decode: bool = True, source: Path | None = None) -> None:
    """Check that ``images_dir`` holds exactly image_0001.jpg ... image_1360.jpg, all readable.

    ``decode=True`` opens every file with Pillow and verifies it; otherwise only names are checked.
    ``source`` (the archive) is what error messages name, when the folder is a temporary one.
    """
    where = source or images_dir
    names = {p.name for p in images_dir.iterdir() if _IMAGE_NAME.match(p.name)}
    expected = {f"image_{i:04d}.jpg" for i in range(1, NUM_IMAGES + 1)}
    missing, extra = sorted(expected - names), sorted(names - expected)
    if missing or extra:
        detail = f"{len(missing):,} missing (first: {missing[:3]})" if missing else ""
        detail += f"{'; ' if detail else ''}{len(extra):,} unexpected (first: {extra[:3]})" if extra else ""
        raise DataError(
            f"{where} does not hold the 1,360 OxFlower17 images: {detail}. Replace the archive "
            f"with the official one ({ARCHIVE_URL})."
        )
    if decode:
        from PIL import Image

        for name in sorted(expected):
            path = images_dir / name
            try:
                with Image.open(path) as img:
                    if img.format != "JPEG":
                        raise OSError(f"is {img.format}, not JPEG")
                    img.verify()
            except Exception as err:  # Pillow raises many types for damaged files
                raise DataError(
                    f"{name} in {where} is not a readable JPEG ({err}). Replace the archive with "
                    f"the official one ({ARCHIVE_URL})."
                ) from err


def _extract(archive: Path, target: Path, trusted: bool) -> None:
    """Extract into a temporary sibling folder and rename it into place only when complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-extract-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the data set is not secret
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, archive)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # Python < 3.11.4: members were checked above
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            if isinstance(err, OSError) and err.errno is not None:  # disk full, permissions: not the archive
                raise DataError(f"Could not extract {archive} into {target.parent}: {err}") from err
            raise DataError(
                f"{archive} is truncated or corrupt ({err}). Delete it and run again to download "
                f"a fresh copy, or copy a good {ARCHIVE_NAME} into {archive.parent}/."
            ) from err
        images = _find_images(tmp)
        if images is None:
            raise DataError(
                f"{archive} holds no image_0001.jpg; it is not the OxFlower17 archive. Replace it "
                f"with {ARCHIVE_URL}."
            )
        validate_images(images, decode=not trusted, source=archive)
        if images != tmp / "jpg":
            images.rename(tmp / "jpg")
        (tmp / READY_MARKER).write_text(f"archive={archive.name}\nmd5={md5sum(archive)}\n")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / READY_MARKER).is_file():  # not a concurrent extraction that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_images(data_dir: str | os.PathLike | None = None, download: bool | None = None) -> Path:
    """Return the folder of the 1,360 JPEGs, extracting (and if needed downloading) them first.

    Order of preference: an extracted ``<data_dir>/oxflower17/jpg`` from an earlier run; the
    archive ``<data_dir>/17flowers.tgz`` placed by hand or downloaded earlier; a download from
    the official URL (not when ``download=False`` or ``$LABKIT_OFFLINE=1``).
    """
    root = resolve_data_dir(data_dir)
    target = root / IMAGES_DIRNAME
    if (target / READY_MARKER).is_file() and (target / "jpg").is_dir():
        return target / "jpg"
    if target.exists():
        raise DataError(
            f"{target} exists but is not a complete labkit extraction (no {READY_MARKER}). "
            f"Move it away or delete it; labkit will extract {ARCHIVE_NAME} again."
        )
    archive = root / ARCHIVE_NAME
    if not archive.is_file():
        if _offline(download):
            raise DataError(
                f"OxFlower17 is not in {root}/ and downloads are off (offline). Download "
                f"{ARCHIVE_URL} and copy {ARCHIVE_NAME} into {root}/ (or set LABKIT_DATA_DIR "
                "to the folder that holds it)."
            )
        root.mkdir(parents=True, exist_ok=True)
        _download(ARCHIVE_URL, archive, ARCHIVE_MD5)
        _download_splits(root)
    root.mkdir(parents=True, exist_ok=True)
    trusted = md5sum(archive) == ARCHIVE_MD5
    if not trusted:
        _announce(
            "archive-md5",
            f"{archive} is not byte-identical to the official archive (md5 {ARCHIVE_MD5}); "
            "accepting it after checking its contents (1,360 readable JPEGs, official names).",
        )
    _extract(archive, target, trusted=trusted)
    return target / "jpg"


# --------------------------------------------------------------------------- splits

def _read_splits_mat(path: Path, partition: int) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as err:
        raise DataError(
            f"{path} cannot be read as a MATLAB file ({err}). Delete it; labkit will download it "
            f"again or fall back to its own split."
        ) from err
    splits = {}
    for split, key in (("train", "trn"), ("val", "val"), ("test", "tst")):
        name = f"{key}{partition}"
        if name not in mat:
            raise DataError(f"{path} has no key {name!r}; it is not OxFlower17's datasplits.mat.")
        ids = np.asarray(mat[name]).astype(np.int64).ravel()
        if len(ids) != SPLIT_SIZES[split] or ids.min() < 1 or ids.max() > NUM_IMAGES:
            raise DataError(
                f"{path}: {name} should hold {SPLIT_SIZES[split]} image ids in 1..{NUM_IMAGES}, "
                f"it holds {len(ids)} in {ids.min()}..{ids.max()}. Replace the file with "
                f"{SPLITS_URL}."
            )
        splits[split] = np.sort(ids)
    all_ids = np.concatenate(list(splits.values()))
    if len(np.unique(all_ids)) != len(all_ids):
        raise DataError(f"{path}: partition {partition}'s train/val/test overlap; replace the file.")
    return splits


def fallback_splits(partition: int = 1) -> dict[str, np.ndarray]:
    """labkit's documented stratified split: per class 40 train / 20 val / 20 test."""
    rng = np.random.default_rng(partition)
    splits = {"train": [], "val": [], "test": []}
    for c in range(NUM_CLASSES):
        ids = rng.permutation(np.arange(c * IMAGES_PER_CLASS, (c + 1) * IMAGES_PER_CLASS) + 1)
        splits["train"].append(ids[:40])
        splits["val"].append(ids[40:60])
        splits["test"].append(ids[60:])
    return {k: np.sort(np.concatenate(v)) for k, v in splits.items()}


def _download_splits(root: Path) -> None:
    """Fetch the optional ``datasplits.mat`` beside a freshly downloaded archive; a failure only
    means labkit's fallback split will be used (and announced)."""
    try:
        _download(SPLITS_URL, root / SPLITS_NAME, SPLITS_MD5, timeout=15)
    except DataError as err:
        _failed_downloads[root / SPLITS_NAME] = f"its download failed: {err.__cause__ or err}"


def load_splits(data_dir=None, partition: int = 1):
    """``(split_name, {"train": ids, "val": ids, "test": ids})`` with 1-based image ids.

    Never touches the network: ``datasplits.mat`` is fetched together with the archive, or
    placed by hand; without it labkit's documented fallback split is used, and announced.
    """
    if partition not in PARTITIONS:
        raise ValueError(f"OxFlower17 has partitions 1, 2 and 3; got partition={partition!r}.")
    root = resolve_data_dir(data_dir)
    path = root / SPLITS_NAME
    why = _failed_downloads.get(path, "labkit fetches it only together with the archive")
    if path.is_file():
        if md5sum(path) != SPLITS_MD5:
            _announce("splits-md5", f"{path} differs from the official file; using it after checking it.")
        return f"{OFFICIAL_SPLIT} partition {partition}", _read_splits_mat(path, partition)
    _announce(
        "splits-fallback",
        f"{SPLITS_NAME} is not in {root}/ ({why}), so labkit uses its own split "
        f"'{FALLBACK_SPLIT}' (same sizes 680/340/340). Results say so. For the official split, "
        f"put {SPLITS_NAME} ({SPLITS_URL}) into {root}/.",
    )
    return f"{FALLBACK_SPLIT} partition {partition}", fallback_splits(partition)


# --------------------------------------------------------------------------- index

def _check_jpeg_files(images_dir: Path) -> None:
    """Cheap check before every pipeline: each file exists and has JPEG start/end markers."""
    if images_dir in _checked_image_dirs:
        return
    for i in range(1, NUM_IMAGES + 1):
        path = images_dir / f"image_{i:04d}.jpg"
        try:
            with open(path, "rb") as f:
                head = f.read(2)
                f.seek(max(0, path.stat().st_size - 1024))
                tail = f.read()
        except OSError as err:
            raise DataError(
                f"{path} cannot be read ({err}). Delete {images_dir.parent} and run again to "
                "extract the archive afresh."
            ) from err
        if head != b"\xff\xd8" or b"\xff\xd9" not in tail:  # start / end-of-image markers
            raise DataError(
                f"{path} is not a complete JPEG (damaged or truncated). Delete "
                f"{images_dir.parent} and run again to extract the archive afresh."
            )
    _checked_image_dirs.add(images_dir)


def oxflower17_index(data_dir=None, partition: int = 1, download: bool | None = None) -> pd.DataFrame:
    """One row per image: ``image_id, path, label, class_name, split`` (train/val/test).

    ``df.attrs`` holds ``split_name`` (official or labkit's fallback), ``partition`` and
    ``data_dir``, so that run records can say which split they used.
    """
    images = ensure_images(data_dir, download=download)
    split_name, splits = load_splits(data_dir, partition)
    _check_jpeg_files(images)
    split_of = np.full(NUM_IMAGES + 1, "", dtype=object)
    for split, ids in splits.items():
        split_of[ids] = split
    ids = np.arange(1, NUM_IMAGES + 1)
    labels = (ids - 1) // IMAGES_PER_CLASS
    df = pd.DataFrame({
        "image_id": ids,
        "path": [str(images / f"image_{i:04d}.jpg") for i in ids],
        "label": labels,
        "class_name": [CLASS_NAMES[c] for c in labels],
        "split": split_of[ids],
    })
    df = df[df["split"] != ""].reset_index(drop=True)  # the official file may leave images out
    df.attrs.update(split_name=split_name, partition=partition, data_dir=str(images.parent.parent))
    return df


SPLIT_CHOICES = ("train", "val", "test", "trainval", "all")


def select_split(index: pd.DataFrame, split: str) -> pd.DataFrame:
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_CHOICES)}; got {split!r}.")
    if split == "all":
        return index
    if split == "trainval":
        return index[index["split"].isin(["train", "val"])]
    return index[index["split"] == split]


def resolve_classes(classes) -> list[int] | None:
    """Class numbers (0-16) from numbers or names (``"sunflower"``); None means all 17."""
    if classes is None:
        return None
    resolved = []
    for c in classes:
        if isinstance(c, str) and not c.strip().isdigit():
            if c.strip().lower() not in CLASS_NAMES:
                raise ValueError(f"{c!r} is not an OxFlower17 class; the classes are {', '.join(CLASS_NAMES)}.")
            resolved.append(CLASS_NAMES.index(c.strip().lower()))
        else:
            number = int(c)
            if not 0 <= number < NUM_CLASSES:
                raise ValueError(f"class numbers go from 0 to {NUM_CLASSES - 1}, got {c!r}.")
            resolved.append(number)
    if len(set(resolved)) != len(resolved) or len(resolved) < 2:
        raise ValueError(f"classes must be at least two different classes, got {list(classes)!r}.")
    return resolved


def split_classes(source: int = 9, seed: int = 0) -> tuple[list[int], list[int]]:
    """Two disjoint groups of OxFlower17's classes, drawn at random with ``seed``: ``source``
    classes for a source task A and the rest for a target task B (Yosinski et al. 2014 split
    ImageNet's classes into two random halves the same way)."""
    if not 2 <= source <= NUM_CLASSES - 2:
        raise ValueError(f"source must leave at least two classes on each side: 2..{NUM_CLASSES - 2}, got {source}.")
    order = np.random.default_rng(seed).permutation(NUM_CLASSES)
    return sorted(order[:source].tolist()), sorted(order[source:].tolist())


def class_names(classes=None) -> tuple[str, ...]:
    """The names of ``classes`` in their new label order (all 17 for None)."""
    chosen = resolve_classes(classes)
    return CLASS_NAMES if chosen is None else tuple(CLASS_NAMES[c] for c in chosen)


def select_task(index: pd.DataFrame, split: str, classes=None, images_per_class: int | None = None) -> pd.DataFrame:
    """The rows of ``split`` for a task on some classes: only ``classes`` (numbers or names),
    relabelled 0..k-1 in the order given, and at most ``images_per_class`` images of each (the
    lowest image numbers: the split itself is random, and 10 images are then among the 40)."""
    rows = select_split(index, split)
    chosen = resolve_classes(classes)
    if chosen is not None:
        rows = rows[rows["label"].isin(chosen)].copy()
        rows["label"] = rows["label"].map({c: i for i, c in enumerate(chosen)})
        rows["class_name"] = [CLASS_NAMES[c] for c in np.asarray(chosen)[rows["label"].to_numpy()]]
    if images_per_class is not None:
        if not isinstance(images_per_class, (int, np.integer)) or images_per_class < 1:
            raise ValueError(f"images_per_class must be a positive whole number, got {images_per_class!r}.")
        rows = rows.sort_values("image_id").groupby("label", sort=False).head(int(images_per_class))
        rows = rows.sort_values("image_id")
    return rows


def image_sizes(index: pd.DataFrame) -> pd.DataFrame:
    """Width and height of every image in ``index``, read from the JPEG headers (no decoding)."""
    from PIL import Image

    sizes = []
    for path in index["path"]:
        with Image.open(path) as img:
            sizes.append(img.size)
    out = index[["image_id", "label", "class_name", "split"]].copy()
    out["width"] = [w for w, _ in sizes]
    out["height"] = [h for _, h in sizes]
    out["short_side"] = out[["width", "height"]].min(axis=1)
    out["aspect"] = (out["width"] / out["height"]).round(3)
    return out
