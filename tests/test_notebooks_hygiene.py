"""The committed lab notebooks: numbered, same setup cell, Colab badge, outputs stripped.

nbval executes them (``pytest`` collects notebooks/ too); these checks keep them committable.
"""
import json
import re

import nbformat
import pytest

from labkit import nbtools

NOTEBOOKS = nbtools.lab_notebooks()


def test_there_are_lab_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_setup_and_data.ipynb"
    names = [p.name for p in sorted(NOTEBOOKS[0].parent.glob("*.ipynb"))]
    assert all(re.match(r"^\d\d_[a-z0-9_]+\.ipynb$", n) for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_badge_and_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nbtools.colab_badge(path.name) in nb.cells[0].source
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == nbtools.setup_cell()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_keeps_only_checked_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert path.stat().st_size < 1_500_000
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if nbtools.is_checked(cell):
            # nbval only compares an executed reference cell
            assert cell.execution_count is not None and cell.outputs, f"cell {i} must be executed and stored"
        else:
            assert not cell.outputs and cell.execution_count is None, f"cell {i} has stale outputs"


def test_strip_removes_everything_nbval_does_not_check():
    nb = nbformat.v4.new_notebook()
    plain = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                      outputs=[nbformat.v4.new_output("stream", text="1\n")])
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2)", execution_count=4, outputs=[
        nbformat.v4.new_output("stream", text="2\n"),
        nbformat.v4.new_output("stream", name="stderr", text="noise\n")])
    nb.cells = [plain, checked]
    nbtools.strip(nb)
    assert plain.outputs == [] and plain.execution_count is None
    assert checked.execution_count == 4 and [o.text for o in checked.outputs] == ["2\n"]
    json.dumps(nb)  # still serialisable


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_runs_on_every_backend_and_uses_public_names(path):
    """No TensorFlow-only calls (``.numpy()``, ``tf.``) and no private labkit names (``labkit.x._y``)."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert ".numpy()" not in cell.source, f"cell {i}: use keras.ops.convert_to_numpy(x)"
        assert not re.search(r"\btf\.|import tensorflow\b(?!_datasets)", cell.source), f"cell {i}: TensorFlow-only code"
        assert not re.search(r"labkit(\.\w+)*\._\w", cell.source), f"cell {i}: a private labkit name"
