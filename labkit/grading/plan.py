"""What to collect from a notebook (grading's phase 0, in the instructor's process).

The hidden and public tests of a lab are run once against the solution's answers, each function
wrapped so that every call a test makes is recorded: its name, its arguments (arrays, networks
and generators saved as data) and a key that the same call gives again in phase 2. Phase 1
calls the student's functions with exactly these arguments; phase 2 runs the same tests and
answers each call from what phase 1 collected. The tests themselves never enter phase 1.

    python -m labkit.grading.plan AUTOGRADER_LAB_DIR PLAN_DIR
"""
from __future__ import annotations

import argparse
import json
import re
import types
import zipfile
from pathlib import Path

import nbformat

from labkit.grading.wire import Numbering, Wire, key

def test_files(autograder: Path, folder: Path) -> dict:
    """``{question: otter TestFile}`` from a lab's ``autograder.zip`` (unpacked into ``folder``)."""
    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

    found = {}
    with zipfile.ZipFile(Path(autograder) / "autograder.zip") as archive:
        for member in sorted(n for n in archive.namelist() if n.startswith("tests/") and n.endswith(".py")):
            path = Path(folder) / Path(member).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(member))
            found[path.stem] = create_test_file(str(path), NBMetadataConfig())
    return found


def case_params(test_file) -> dict[str, list[str]]:
    """``{case name: [the notebook names its test function takes]}``."""
    return {case.name: list(case.body._get_func_params()) for case in test_file.test_cases}


def solution_namespace(autograder: Path) -> dict:
    """The globals after running the solution's answer cells (the code cell before each
    ``grader.check`` of a question the student answers), in order."""
    import numpy as np

    lab = Path(autograder).name
    answered = {q["name"] for q in json.loads((Path(autograder) / "questions.json").read_text()) if q["answered"]}
    cells = nbformat.read(Path(autograder) / f"{lab}.ipynb", as_version=4).cells
    env = {"np": np}
    for i, cell in enumerate(cells):
        check = re.fullmatch(r'grader\.check\("(\w+)"\)', cell.source.strip())
        if check and check.group(1) in answered:
            answer = next(c for c in reversed(cells[:i]) if c.cell_type == "code")
            try:
                exec(compile(answer.source, f"<solution {lab}:{check.group(1)}>", "exec"), env)
            except NameError:
                pass   # it reads what training left (lab 05's runs): its tests read values, not calls
    return env


class _Recorder:
    """Stands in for a solution function while the tests run: records each call, then calls it."""

    def __init__(self, name: str, fn, plan: "Planner"):
        self.__name__, self.fn, self.plan = name, fn, plan

    def __call__(self, *args, **kwargs):
        import keras

        plan = self.plan
        args_key = key([list(args), kwargs], plan.key_numbers)
        entry = {"name": self.__name__, "key": args_key, "args": plan.wire.encode(list(args), weights=True),
                 "kwargs": plan.wire.encode(dict(kwargs), weights=True), "case": plan.case}
        plan.calls.append(entry)
        result = self.fn(*args, **kwargs)
        if isinstance(result, (keras.Model, keras.KerasTensor)) or (
                isinstance(result, (list, tuple)) and result and isinstance(result[0], keras.KerasTensor)):
            plan.networks.add(self.__name__)
        return result


class Planner:
    def __init__(self, folder: Path):
        self.wire = Wire(folder)
        self.calls: list[dict] = []
        self.networks: set[str] = set()
        self.case = ""
        self.key_numbers = Numbering()

    def start(self, case: str) -> None:
        self.case, self.key_numbers = case, Numbering()
        self.wire.numbers = Numbering()


def make_plan(autograder, out) -> dict:
    """Run every test of the lab against the solution, recording the calls; write them to ``out``
    (``Wire``)."""
    autograder, out = Path(autograder), Path(out)
    files = test_files(autograder, out / "tests")
    env = solution_namespace(autograder)
    planner = Planner(out)
    names: dict[str, dict] = {}
    for question, test_file in files.items():
        for case in test_file.test_cases:
            params = case.body._get_func_params()
            for name in params:
                kind = "function" if isinstance(env.get(name), types.FunctionType) else "value"
                names.setdefault(name, {"kind": kind})
            if any(names[n]["kind"] == "value" and n not in env for n in params):
                continue   # it reads a run the notebook trains: nothing to call in advance
            planner.start(f"{question}/{case.name}")
            wrapped = {**env, **{n: _Recorder(n, env[n], planner) for n in params if names[n]["kind"] == "function"}}
            try:
                case.body.call_func(wrapped)
            except Exception as err:  # the solution must pass its own tests: say which does not
                raise RuntimeError(f"{question}/{case.name} fails on the solution: {type(err).__name__}: {err}") from err
    for name in planner.networks:
        names[name]["network"] = True
    payload = {"names": names, "calls": planner.calls,
               "questions": {q: case_params(f) for q, f in files.items()}}
    planner.wire.save(payload)
    return payload


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("autograder")
    parser.add_argument("out")
    args = parser.parse_args()
    make_plan(args.autograder, args.out)
