"""``python -m labkit release``: the folder students get, to publish as its own repository.

    dist/release/
        README.md             the student guide (docs/students.md)
        notebooks/NN_*.ipynb  student versions: no solutions, no hidden tests; their setup cell
                              and Colab badge point at the release's own address
        notebooks/tests/      the public tests (``grader.check``)
        previews/             each lab executed with a solution, without its code (``labkit.render``)
        labkit/, pyproject.toml, requirements.txt    the package, installable with pip
        data/README.md

The address comes from ``course.yml`` (``release_url``), the one place it is set. Before
anything is written, every file of the release is searched for solution lines, hidden tests and
the master repository's address (``release_leaks``).

The package is the whole of labkit, reference implementations included: later labs train
``labkit.models`` and the grader needs them. An exercise stays the student's own because its
tests give no credit to an answer that calls labkit's version (``labkit.exercises``,
``labkit.models.provenance``), and because the lab asks for the idea in the student's words.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import yaml

from labkit.grading.masters import GradingError, _hidden_test_names, _solution_lines, graded_notebooks

RELEASE_MARKER = ".labkit-release"
#: where each part of the release comes from, relative to the checkout
PACKAGE_FILES = ("pyproject.toml", "requirements.txt")
STUDENT_GUIDE = "docs/students.md"
DATA_README = "data/README.md"
PREVIEWS = "previews"
#: the files searched by release_leaks
_TEXT_SUFFIXES = (".py", ".ipynb", ".md", ".txt", ".toml", ".yml", ".yaml", ".json", ".cfg")


def _checkout() -> Path:
    from labkit import places

    root = places.checkout()
    if root is None:
        raise GradingError("labkit is not installed from a checkout of the master repository; run "
                           "`python -m labkit release` in the clone that holds notebooks/ and course.yml.")
    return root


def course_config(path=None) -> dict:
    """``course.yml``, checked: ``release_url`` is set, is an address, and is not the master's."""
    from labkit import REPO_URL

    path = Path(path) if path else _checkout() / "course.yml"
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise GradingError(f"cannot read {path} ({err}); it sets release_url, the address students "
                           "install labkit from.") from None
    url = str(config.get("release_url") or "").strip().rstrip("/")
    if not re.match(r"^(https://|git@|file://)\S+$", url):
        raise GradingError(f"{path}: release_url must be the https:// (or git@) address of the student "
                           f"repository, got {url!r}.")
    if url.removesuffix(".git") == REPO_URL.removesuffix(".git"):
        raise GradingError(f"{path}: release_url is the master repository ({REPO_URL}), which holds every "
                           "solution; set it to the student repository's address.")
    return {**config, "release_url": url}


def _colab_link(url: str, notebook: str) -> str | None:
    match = re.match(r"^https://github\.com/([^/]+/[^/]+?)(?:\.git)?$", url)
    return (f"https://colab.research.google.com/github/{match.group(1)}/blob/main/notebooks/{notebook}"
            if match else None)


def _point_at(nb, url: str, name: str) -> None:
    """The setup cell installs from ``url``; the Colab badge opens the release's notebook."""
    from labkit import nbtools

    setup = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Setup"))
    setup.source = nbtools.setup_cell(url)
    link = _colab_link(url, name)
    for cell in nb.cells[:2]:
        if cell.cell_type == "markdown":
            badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"
                     if link else "*On Colab: File → Upload notebook, then run the setup cell.*")
            cell.source = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)", badge, cell.source)
            cell.source = cell.source.replace("*On Colab: File → Upload notebook, then run the setup cell.*", badge)


def release_leaks(folder: Path, masters: list[Path]) -> list[str]:
    """What ``folder`` would reveal: solution lines in any notebook, test or document, and hidden
    tests or the master repository's address anywhere. The package's own source is searched for
    hidden tests and the address only: it holds the reference implementations (module docstring)."""
    from labkit import REPO_URL

    solutions, hidden = set(), set()
    for master in masters:
        nb = nbformat.read(master, as_version=4)
        solutions |= _solution_lines(nb)
        hidden |= _hidden_test_names(nb)
    master = re.compile(re.escape(REPO_URL.removeprefix("https://").removesuffix(".git")) + r"(?![\w-])")
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _TEXT_SUFFIXES):
        text = path.read_text(encoding="utf-8", errors="replace")
        where = path.relative_to(folder)
        if master.search(text):
            found.append(f"{where}: the master repository's address")
        found += [f"{where}: hidden test {name}" for name in sorted(hidden) if name in text]
        if where.parts[0] != "labkit":
            found += [f"{where}: solution line {line!r}" for line in sorted(solutions) if line in text]
    return found


def release(out="dist/release", config=None, log=print) -> Path:
    """Write the student release into ``out`` (see the module docstring); a folder that
    ``release`` did not make is never overwritten, and nothing is replaced unless the whole new
    release is complete and clean."""
    from labkit import nbtools
    from labkit.grading.assign import assign

    root = _checkout()
    url = course_config(config)["release_url"]
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RELEASE_MARKER).is_file())):
        raise GradingError(f"{out} exists and was not made by `python -m labkit release`; choose another "
                           "--out, or move it away first (nothing was written).")
    masters = graded_notebooks()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".release-", dir=out.parent))
    try:
        stage = work / "release"
        dist = assign(work / "dist", notebooks=masters, log=lambda *_: None)
        shutil.copytree(dist / "student", stage / "notebooks")
        ungraded = [p for p in nbtools.lab_notebooks() if p not in masters]   # lab 00: nothing to hide
        for path in ungraded:
            shutil.copy2(path, stage / "notebooks" / path.name)
        for path in sorted((stage / "notebooks").glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            _point_at(nb, url, path.name)
            nbformat.write(nb, path)
        shutil.copytree(root / "labkit", stage / "labkit",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        init = stage / "labkit" / "__init__.py"
        text, n = re.subn(r'^REPO_URL = ".*"$', f"REPO_URL = {url!r}".replace("'", '"'), init.read_text(),
                          flags=re.M)
        if n != 1:
            raise GradingError("labkit/__init__.py no longer sets REPO_URL on one line; release cannot "
                               "point the package at the student repository.")
        init.write_text(text)
        for name in PACKAGE_FILES:
            shutil.copy2(root / name, stage / name)
        shutil.copy2(root / STUDENT_GUIDE, stage / "README.md")
        if (root / PREVIEWS).is_dir():
            shutil.copytree(root / PREVIEWS, stage / PREVIEWS)
            for path in sorted((stage / PREVIEWS).glob("*.ipynb")):
                nb = nbformat.read(path, as_version=4)
                _point_at(nb, url, path.name)
                nbformat.write(nb, path)
        (stage / "data").mkdir()
        shutil.copy2(root / DATA_README, stage / DATA_README)
        (stage / ".gitignore").write_text("data/*\n!data/README.md\noutputs/\n__pycache__/\n*.egg-info/\n"
                                          ".ipynb_checkpoints/\n.OTTER_LOG\n")
        problems = release_leaks(stage, masters)
        if problems:
            raise GradingError("the release would reveal: " + "; ".join(problems[:10]))
        (stage / RELEASE_MARKER).write_text(f"made by python -m labkit release for {url}\n")
        if out.exists():
            out.rename(work / "old")
        stage.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(list((out / "notebooks").glob("*.ipynb")))
    log(f"[labkit.release] {n} notebooks, their public tests and labkit in {out}; publish it at {url}")
    return out
