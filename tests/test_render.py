"""``labkit render`` in the smoke profile: pages, previews without solutions, an index with results."""
import re

import nbformat
import pytest

from labkit import grading, places, render
from labkit.grading.masters import _solution_lines


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, real_data_dir):
    import os

    out = tmp_path_factory.mktemp("site")
    old = {k: os.environ.get(k) for k in ("LABKIT_DATA_DIR", "LABKIT_OUTPUTS_DIR", "LABKIT_OFFLINE")}
    os.environ.update(LABKIT_DATA_DIR=str(real_data_dir), LABKIT_OUTPUTS_DIR=str(out / "outputs"),
                      LABKIT_OFFLINE="1")
    try:
        summaries = render.render("smoke", out=out / "site", previews=out / "previews",
                                  notebooks=["00", "02"], log=lambda *_: None)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return out, summaries


def test_render_writes_pages_and_an_index_with_times_and_results(rendered):
    out, summaries = rendered
    assert [s["lab"] for s in summaries] == ["00_setup_and_data", "02_alexnet"]
    for s in summaries:
        assert s["errors"] == [] and s["noise"] == [], s     # no traceback, no log storm
        page = (out / "site" / f"{s['lab']}.html").read_text()
        assert "<html" in page and "Traceback" not in page
    alexnet = summaries[1]
    assert alexnet["runs"] and alexnet["runs"][0].startswith("alexnet_smoke_")   # the run it trained
    assert (out / "outputs" / alexnet["runs"][0] / "results.json").is_file()
    index = (out / "site" / "index.html").read_text()
    assert "02_alexnet.html" in index and "test top-1" in index and " min" in index
    readme = (out / "previews" / "README.md").read_text()
    assert "| [02_alexnet](02_alexnet.ipynb) |" in readme


def test_previews_show_outputs_but_no_solution(rendered):
    out, _ = rendered
    preview = nbformat.read(out / "previews" / "02_alexnet.ipynb", as_version=4)
    master = next(p for p in grading.graded_notebooks() if p.stem == "02_alexnet")
    text = (out / "previews" / "02_alexnet.ipynb").read_text()
    assert not [line for line in _solution_lines(nbformat.read(master, as_version=4)) if line in text]
    code = [c for c in preview.cells if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in code) > len(code) // 2         # most cells show their outputs
    images = [k for c in code for o in c.outputs for k in o.get("data", {}) if k.startswith("image/")]
    assert images and "image/jpeg" in images                            # figures, stored small
    assert preview.metadata["labkit_render"]["profile"] == "smoke"
    checks = ["\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in c.outputs)
              for c in code if c.source.lstrip().startswith("grader.check(")]
    assert checks and all("passed" in text for text in checks), checks   # the solution passes its checks


def test_rendering_one_lab_again_keeps_the_others_in_the_index(rendered, real_data_dir, monkeypatch):
    out, _ = rendered
    monkeypatch.setenv("LABKIT_DATA_DIR", str(real_data_dir))
    monkeypatch.setenv("LABKIT_OUTPUTS_DIR", str(out / "outputs"))
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    again = render.render("smoke", out=out / "site-again", previews=out / "previews", notebooks=["00"],
                          log=lambda *_: None)
    assert [s["lab"] for s in again] == ["00_setup_and_data"]
    readme = (out / "previews" / "README.md").read_text()
    assert "| [00_setup_and_data]" in readme and "| [02_alexnet](02_alexnet.ipynb) |" in readme
    assert readme.index("| [00_setup_and_data]") < readme.index("| [02_alexnet]")   # in the labs' order
    assert "test top-1" in readme                                   # lab 02's results, from its run
    assert (out / "site-again" / "02_alexnet.html").is_file()       # its page, from its preview
    assert "02_alexnet.html" in (out / "site-again" / "index.html").read_text()
