"""The guides exist, and the instructors' answer key answers every discussion question."""
import re
from pathlib import Path

import nbformat

from labkit import nbtools

DOCS = Path(__file__).resolve().parents[1] / "docs"


def discussion_questions(path: Path) -> int:
    """How many questions a lab's **Questions** paragraph (or its Discussion list) asks."""
    count = 0
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        if "**Questions.**" in cell.source:
            count += len(re.findall(r"\((\d)\)", cell.source.split("**Questions.**", 1)[1]))
        if "## 4. Discussion" in cell.source:
            count += len(re.findall(r"^\d\. ", cell.source.split("## 4. Discussion", 1)[1], flags=re.M))
    return count


def answers(guide: str, lab: str) -> int:
    match = re.search(rf"^### Lab {lab}\b.*?(?=^### |\Z)", guide, flags=re.M | re.S)
    return len(re.findall(r"^\d\. ", match.group(0), flags=re.M)) if match else 0


def test_every_discussion_question_has_an_answer():
    guide = (DOCS / "instructors.md").read_text()
    asked = {p.stem[:2]: discussion_questions(p) for p in nbtools.lab_notebooks()}
    assert sum(asked.values()) >= 25
    for lab, n in asked.items():
        assert answers(guide, lab) == n, f"lab {lab}: {n} questions, {answers(guide, lab)} answers"


def test_the_guides_cover_what_the_issue_asks():
    guide = (DOCS / "instructors.md").read_text()
    for heading in ("Learning goals", "Pacing a 3-hour session", "Expected results",
                    "Assign, release, collect, grade", "What the grading sandbox protects against"):
        assert f"## {heading}" in guide
    for lab in (p.stem[:2] for p in nbtools.lab_notebooks()):
        assert re.search(rf"^\| {lab} \|", guide, flags=re.M), f"no learning goals for lab {lab}"
    students = (DOCS / "students.md").read_text()
    for heading in ("Open a lab on Colab", "When Colab disconnects", "What to hand in"):
        assert f"## {heading}" in students
