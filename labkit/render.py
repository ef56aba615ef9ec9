"""``python -m labkit render``: every lab executed, as a student's working copy would look.

    python -m labkit render --profile cpu --out site/ [--previews previews/]

For each lab it runs the solution notebook (otter's autograder version) in the profile, then
copies each cell's outputs into the *student* version, cell for cell (otter keeps the two in
step): the preview shows what a working lab prints and draws, and the student's cells as the
student gets them, without solutions or hidden tests. Figures are stored as JPEG where that is
smaller. It writes

    site/NN_topic.html, site/index.html   pages to read in a browser (nbconvert), and an index
                                          with each lab's time, problems and results;
    previews/NN_topic.ipynb, README.md    the same notebooks, small enough to commit (GitHub
                                          shows them), for students to compare with their own.

A lab's *results* are the run records its outputs name (``outputs/<run>``). Runs already
finished are read back, not trained again, so a render after the labs have run takes minutes.
Rendering some labs (``render 02``) into a previews folder keeps the others' lines in the index.
"""
from __future__ import annotations

import base64
import html
import io
import re
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

#: a figure is stored as JPEG of this quality, at most this wide, when that is smaller than its PNG
JPEG_QUALITY, MAX_WIDTH = 75, 1100


def _shrink_images(nb) -> None:
    from PIL import Image

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            png = base64.b64decode(data["image/png"])
            image = Image.open(io.BytesIO(png)).convert("RGB")
            if image.width > MAX_WIDTH:
                image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
            if buffer.tell() < len(png):
                del data["image/png"]
                data["image/jpeg"] = base64.b64encode(buffer.getvalue()).decode()


def _execute(nb, folder: Path, profile: str, timeout: float) -> float:
    from labkit import nbtools

    started = time.perf_counter()
    nbtools.run(nb, folder, profile, timeout, allow_errors=True)
    return time.perf_counter() - started


def problems(nb) -> dict:
    """What a reader should never see: ``errors`` (cell, exception class) and ``noise``, the
    lines on stderr that are not labkit's own one-line messages (``labkit: ...``)."""
    errors, noise = [], []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append((index, output.get("ename", "")))
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                noise += [(index, line) for line in str(output.get("text", "")).splitlines()
                          if line.strip() and not line.startswith(("labkit: ", "[labkit"))]
    return {"errors": errors, "noise": noise}


def run_names(nb, outputs_dir: Path) -> list[str]:
    """The run folders (in ``outputs_dir``) that the notebook's outputs name, in order."""
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells for o in c.get("outputs", []))
    found = []
    for token in re.findall(r"[\w.-]+_(?:gpu|cpu|smoke)_\d+px[\w.-]*", text):
        token = token.rstrip(".")
        if token not in found and (outputs_dir / token / "results.json").is_file():
            found.append(token)
    return found


#: a lab with more runs than this (lab 08's 24) is summed up in one line
MAX_LISTED_RUNS = 5


def _results(names: list[str], outputs_dir: Path) -> list[str]:
    import json

    from labkit.report import _middle

    records = [json.loads((outputs_dir / name / "results.json").read_text()) for name in names]
    if len(records) > MAX_LISTED_RUNS:
        top1 = [r["test_top1"] for r in records]
        minutes = sum(r["training_seconds"] for r in records) / 60
        return [f"{len(records)} runs: test top-1 {min(top1):.1%} to {max(top1):.1%}, "
                f"{minutes:.0f} min training in all"]
    return [f"{_middle(name, 48)}: test top-1 {r['test_top1']:.1%}, {r['epochs_run']} epochs, "
            f"{r['training_seconds'] / 60:.0f} min training" for name, r in zip(names, records)]


def summarize(nb, lab: str, seconds: float) -> dict:
    """A lab's line in the index: its time, what went wrong, the runs its outputs name."""
    from labkit import places

    names = run_names(nb, places.outputs_dir())
    return {"lab": lab, "seconds": seconds, **problems(nb), "runs": names,
            "results": _results(names, places.outputs_dir())}


def write_index(summaries: list[dict], profile: str, out, previews=None) -> None:
    (Path(out) / "index.html").write_text(index_html(summaries, profile), encoding="utf-8")
    if previews is not None:
        (Path(previews) / "README.md").write_text(index_markdown(summaries, profile), encoding="utf-8")


def _page(nb, title: str) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def _lab_path(name) -> Path:
    """A notebook path, or a lab's name or number (``05_resnet``, ``05``) in ``notebooks/``."""
    from labkit import nbtools

    if Path(name).is_file():
        return Path(name).resolve()
    found = [p for p in nbtools.lab_notebooks() if p.stem == str(name) or p.stem.split("_")[0] == str(name)]
    if not found:
        raise ValueError(f"no lab notebook {name!r}; give a path or a lab such as 05_resnet or 05.")
    return found[0]


def render(profile: str = "cpu", out="site", previews=None, notebooks=None, timeout: float = 7200,
           log=print) -> list[dict]:
    """Execute and render the labs (default: every ``notebooks/NN_*.ipynb``); returns one
    summary per lab: ``lab``, ``seconds``, ``errors``, ``noise``, ``runs``, ``results``."""
    from labkit import nbtools
    from labkit.grading import assign, graded_notebooks
    from labkit.profiles import get_profile

    profile = get_profile(profile).name
    labs = [_lab_path(p) for p in notebooks] if notebooks else nbtools.lab_notebooks()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    masters = [p for p in labs if p in set(graded_notebooks(labs[0].parent))]
    summaries = []
    with tempfile.TemporaryDirectory(prefix="labkit-render-") as tmp:
        tmp = Path(tmp)
        dist = assign(tmp / "dist", notebooks=masters, log=lambda *_: None) if masters else None
        work = tmp / "work"
        work.mkdir()
        if dist is not None:
            shutil.copytree(dist / "student" / "tests", work / "tests")
        for lab in labs:
            if lab in masters:
                student = nbformat.read(dist / "student" / lab.name, as_version=4)
                solution = nbformat.read(dist / "autograder" / lab.stem / lab.name, as_version=4)
            else:
                student = solution = nbformat.read(lab, as_version=4)
            log(f"[labkit.render] {lab.stem}: executing in the {profile} profile ...")
            nbformat.write(solution, work / lab.name)   # otter's grader.check reads the notebook's file
            seconds = _execute(solution, work, profile, timeout)
            for mine, ran in zip(student.cells, solution.cells):
                if mine.cell_type == "code":
                    mine.outputs, mine.execution_count = ran.outputs, ran.execution_count
            _shrink_images(student)
            student.metadata["labkit_render"] = {"profile": profile, "seconds": round(seconds)}
            summary = summarize(student, lab.stem, seconds)
            summaries.append(summary)
            (out / f"{lab.stem}.html").write_text(_page(student, lab.stem), encoding="utf-8")
            if previews is not None:
                Path(previews).mkdir(parents=True, exist_ok=True)
                nbformat.write(student, Path(previews) / lab.name)
            log(f"[labkit.render] {lab.stem}: {seconds / 60:.1f} min, {len(summary['errors'])} errors, "
                f"{len(summary['noise'])} lines of warnings")
    every = summaries + _kept(previews, profile, {s["lab"] for s in summaries}, out)
    write_index(sorted(every, key=lambda s: s["lab"]), profile, out, previews)
    return summaries


def _kept(previews, profile: str, rendered: set, out: Path) -> list[dict]:
    """The labs rendered earlier into ``previews`` in the same profile and not again now: their
    lines stay in the index and their pages are written to ``out``, so that rendering one lab
    again keeps the others."""
    kept = []
    for path in sorted(Path(previews).glob("[0-9][0-9]_*.ipynb")) if previews is not None else []:
        nb = nbformat.read(path, as_version=4)
        done = nb.metadata.get("labkit_render", {})
        if path.stem not in rendered and done.get("profile") == profile:
            kept.append(summarize(nb, path.stem, done.get("seconds", 0)))
            (out / f"{path.stem}.html").write_text(_page(nb, path.stem), encoding="utf-8")
    return kept


def _machine() -> str:
    from labkit.env import cpu_description, device_report

    return f"{device_report()['device']}; {cpu_description()}"


def index_markdown(summaries: list[dict], profile: str) -> str:
    lines = [f"# The labs, executed ({profile} profile)", "",
             "What each lab looks like when it works: the student notebooks with the outputs of a "
             "correct solution (`python -m labkit render`). The solutions themselves are not here.", "",
             f"Machine: {_machine()}.", "",
             "*Render time* is this execution's: a run already on disk is read back, not trained again, so "
             "a lab's time in class is that plus the training minutes of its runs.", "",
             "| lab | render time | problems | results (run records) |", "|---|---|---|---|"]
    for s in summaries:
        problem = f"{len(s['errors'])} errors" if s["errors"] else "none"
        lines.append(f"| [{s['lab']}]({s['lab']}.ipynb) | {s['seconds'] / 60:.1f} min | {problem} | "
                     f"{'<br>'.join(s['results']) or '-'} |")
    return "\n".join(lines) + "\n"


def index_html(summaries: list[dict], profile: str) -> str:
    rows = "\n".join(
        f"<tr><td><a href='{s['lab']}.html'>{html.escape(s['lab'])}</a></td><td>{s['seconds'] / 60:.1f} min</td>"
        f"<td>{len(s['errors']) or 'none'}</td><td>{'<br>'.join(html.escape(r) for r in s['results']) or '-'}</td></tr>"
        for s in summaries)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>labkit labs ({profile} profile)</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.5}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}</style></head>
<body><h1>labkit: the labs, executed ({profile} profile)</h1>
<p>Machine: {html.escape(_machine())}.</p>
<p>Render time is this execution's: a run already on disk is read back, not trained again, so a lab's
time in class is that plus the training minutes of its runs.</p>
<table><tr><th>lab</th><th>render time</th><th>errors</th><th>results (run records)</th></tr>
{rows}
</table></body></html>
"""
