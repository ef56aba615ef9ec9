"""The student release: what it holds, what it must never hold, and that it installs and runs."""
import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
import yaml

from labkit import REPO_URL, grading, nbtools
from labkit.grading.masters import _hidden_test_names, _solution_lines

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return grading.release(tmp_path_factory.mktemp("rel") / "release", log=lambda *_: None)


def test_release_holds_student_notebooks_tests_package_and_guides(release):
    url = grading.course_config()["release_url"]
    labs = [p.name for p in nbtools.lab_notebooks()]
    assert sorted(p.name for p in (release / "notebooks").glob("*.ipynb")) == labs
    assert sorted((release / "notebooks" / "tests").glob("*.py"))          # the public tests, as files
    for name in ("README.md", "pyproject.toml", "requirements.txt", "data/README.md", "labkit/__init__.py",
                 "labkit/train/engine.py"):
        assert (release / name).is_file(), name
    assert not (release / "docs").exists() and not (release / "course.yml").exists()
    for path in (release / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[1].source == nbtools.setup_cell(url), path.name     # installs from the release
        assert url.removeprefix("https://github.com/") in nb.cells[0].source   # its Colab badge too
    assert f'REPO_URL = "{url}"' in (release / "labkit" / "__init__.py").read_text()
    previews = sorted((release / "previews").glob("*.ipynb"))         # the committed render, as students see it
    assert [p.name for p in previews] == labs and (release / "previews" / "README.md").is_file()
    for path in previews:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[1].source == nbtools.setup_cell(url) and nb.cells[1].outputs, path.name


def test_nothing_in_the_release_holds_a_solution_a_hidden_test_or_the_master_address(release):
    masters = grading.graded_notebooks()
    solutions = set().union(*(_solution_lines(nbformat.read(m, as_version=4)) for m in masters))
    hidden = set().union(*(_hidden_test_names(nbformat.read(m, as_version=4)) for m in masters))
    assert len(solutions) > 50 and len(hidden) > 10
    master = REPO_URL.removeprefix("https://")
    for path in (p for p in release.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        assert master + '"' not in text and master + "/" not in text and master + ")" not in text, path
        assert not [h for h in hidden if h in text], path
        if path.relative_to(release).parts[0] != "labkit":   # the package holds the references: see release.py
            assert not [s for s in solutions if s in text], path
    assert grading.release_leaks(release, masters) == []


def test_a_planted_solution_is_caught(release, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(release, copy)
    master = grading.graded_notebooks()[1]
    line = sorted(_solution_lines(nbformat.read(master, as_version=4)))[0]
    (copy / "notebooks" / "notes.md").write_text(f"from a friend:\n    {line}\n")
    (copy / "labkit" / "extra.py").write_text(f"# see {REPO_URL}\n")
    found = grading.release_leaks(copy, grading.graded_notebooks())
    assert any(f.startswith("notebooks/notes.md: solution line") for f in found)
    assert any(f.startswith("labkit/extra.py: the master") for f in found)


def test_release_refuses_the_master_address_and_a_foreign_folder(tmp_path):
    config = tmp_path / "course.yml"
    config.write_text(yaml.safe_dump({"release_url": REPO_URL}))
    with pytest.raises(grading.GradingError, match="master repository"):
        grading.course_config(config)
    config.write_text(yaml.safe_dump({"release_url": "labkit-student"}))
    with pytest.raises(grading.GradingError, match="release_url"):
        grading.course_config(config)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(grading.GradingError, match="not made by"):
        grading.release(tmp_path / "mine", log=lambda *_: None)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


def test_release_installs_offline_into_a_fresh_environment_and_a_student_notebook_runs(release, tmp_path,
                                                                                          real_data_dir):
    env_dir = tmp_path / "student-env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # labkit's dependencies come from this environment (no network here); labkit itself only
    # from the release
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "course-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                "--no-build-isolation", str(release)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]

    lab = "01_cnn_building_blocks.ipynb"
    nb = nbformat.read(release / "notebooks" / lab, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import labkit, json\nprint(json.dumps([labkit.__file__, labkit.REPO_URL]))"))
    work = tmp_path / "student"
    (work / "tests").mkdir(parents=True)
    for test in (release / "notebooks" / "tests").glob("*.py"):
        (work / "tests" / test.name).write_text(test.read_text())
    nbformat.write(nb, work / lab)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{env_dir / 'bin'}:{env['PATH']}", LABKIT_PROFILE="smoke", LABKIT_OFFLINE="1",
               LABKIT_DATA_DIR=str(real_data_dir), LABKIT_OUTPUTS_DIR=str(tmp_path / "outputs"))
    script = ("import nbformat, nbclient, sys\n"
              f"nb = nbformat.read({str(work / lab)!r}, as_version=4)\n"
              "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3', allow_errors=True,\n"
              f"    resources={{'metadata': {{'path': {str(work)!r}}}}}).execute()\n"
              f"nbformat.write(nb, {str(work / lab)!r})\n")
    done = subprocess.run([str(python), "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = nbformat.read(work / lab, as_version=4)
    errors = [o for c in ran.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == [], [(e.ename, e.evalue) for e in errors]    # unsolved: its checks fail, nothing raises
    where, url = json.loads(ran.cells[-1].outputs[0]["text"])
    assert Path(where).is_relative_to(env_dir) and url == grading.course_config()["release_url"]
