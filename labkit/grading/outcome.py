"""What grading one notebook gives, as data: scores never depend on the wording of a message.

A worker returns an ``Outcome``: whether the whole lab scores zero (``fatal``, with its
``reason``), each question's score, the cells that raised (by exception class), and the run
records it accepted or rejected. ``rows`` turns it into the grade book's rows.
"""
from __future__ import annotations

import dataclasses

#: the exception class ``labkit.train`` raises when grading by records finds no valid record
TRAINING_REFUSED = "TrainingRefused"


@dataclasses.dataclass
class Outcome:
    questions: dict = dataclasses.field(default_factory=dict)  # name -> {"score", "possible", "message"}
    raised: list = dataclasses.field(default_factory=list)     # [{"cell": index, "ename", "evalue"}]
    records: dict = dataclasses.field(default_factory=dict)    # run name -> [problems]; [] = genuine
    fatal: bool = False       # the whole lab scores zero: it ran past its time, or wrote outside its folder
    reason: str = ""          # why it is fatal, for the grade book
    seconds: float = 0.0
    isolation: str = ""       # how phase 1 was isolated: "bubblewrap", or "process only: <why>"

    @classmethod
    def failed(cls, reason: str, seconds: float = 0.0) -> "Outcome":
        return cls(fatal=True, reason=reason, seconds=seconds)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> "Outcome":
        return cls(**{f.name: payload[f.name] for f in dataclasses.fields(cls) if f.name in payload})

    def problems(self) -> list[str]:
        """One line per thing that went wrong, for the log."""
        lines = [self.reason] if self.reason else []
        lines += [f"a cell raised {r['ename']}: {r['evalue'][:200]}" for r in self.raised]
        lines += [f"run record {name} rejected: {'; '.join(p)}" for name, p in self.records.items() if p]
        return lines


def rows(student: str, lab: str, expected: list[dict], outcome: Outcome | None, absent: str = "") -> list[dict]:
    """One grade-book row per expected question: zero for all when ``outcome`` is missing
    (not handed in) or fatal; zero for a question the run never reached; otherwise its score,
    with its own tests' message (a question about a run says what is wrong with the run)."""
    out = []
    for q in expected:
        got = outcome.questions.get(q["name"]) if outcome is not None else None
        if outcome is None:
            score, message = 0.0, absent
        elif outcome.fatal:
            score, message = 0.0, outcome.reason
        elif got is None:
            score, message = 0.0, (outcome.problems() or ["not graded"])[0]
        else:
            score, message = got["score"], got["message"]
        out.append(dict(student=student, lab=lab, question=q["name"], score=score, max_score=q["points"],
                        message=message, isolation=outcome.isolation if outcome is not None else "", flags=""))
    return out
