"""Grading's phase 2: score what phase 1 collected, in a fresh process where no submission code runs.

    python -m labkit.grading.score --batch BASE/job.json [BASE/job.json ...]

The lab's tests (public and hidden, from the autograder) run here as they are written, against
stand-ins: each function of the notebook answers a test's call from what phase 1 collected for
that call (``labkit.grading.plan``), each value is the one collected, and each run is the folder
the student handed in, checked first (``labkit.train.integrity``, and the network inside its
``best.keras`` against the record's fingerprint). Nothing collected is unpickled; networks are
loaded in Keras' safe mode (``labkit.grading.wire``). The answer cells' source is checked too
(``labkit.grading.statics``). The result is an ``Outcome``, as JSON.
"""
from __future__ import annotations

import argparse
import builtins
import json
import types
from pathlib import Path

import numpy as np

from labkit.grading.outcome import Outcome
from labkit.grading.wire import TAG, Numbering, Wire, WireError, key


class _Rejected:
    """A run the tests may not read: every use fails the test with the reason."""

    def __init__(self, reason: str):
        self._reason = reason

    def __getattr__(self, name):
        raise AssertionError(self._reason)

    def __fspath__(self):
        raise AssertionError(self._reason)


def check_runs(handed_in: dict, data_dir=None) -> dict[str, list[str]]:
    """``{run name: problems}`` of the handed-in run folders; ``[]`` means genuine."""
    from labkit.train.integrity import check_run

    return {name: check_run(folder, data_dir=data_dir) for name, folder in sorted(handed_in.items())}


def _run_view(name: str, handed_in: dict, records: dict, data_dir=None):
    """The run folder ``name`` as the tests read it, checked first (once: ``records`` keeps the
    problems of each run checked), or a stand-in that fails the test with the reason."""
    import pandas as pd

    if name not in handed_in:
        return _Rejected(f"the run {name} was not handed in: hand in its folder from outputs/ with the notebook")
    if name not in records:
        records.update(check_runs({name: handed_in[name]}, data_dir))
    if records.get(name):
        return _Rejected(f"the run {name} was rejected: {'; '.join(records[name])}")
    folder = Path(handed_in[name])
    record = json.loads((folder / "results.json").read_text())
    return types.SimpleNamespace(out_dir=folder, results=record, network=record.get("network") or {},
                                 history=pd.read_csv(folder / "history.csv"))


class _Missing(_Rejected):
    """A value the notebook never set: using it fails the test with the reason."""

    def __init__(self, name: str):
        super().__init__(f"{name} was never set: the notebook stopped before it (a cell raised), or, for a "
                         "run, no run folder was handed in for it")

    def __bool__(self):
        raise AssertionError(self._reason)


class _State:
    def __init__(self):
        self.case, self.numbers, self.used = "", Numbering(), set()


class _Replay:
    """Stands in for a notebook function in phase 2: answers each call from phase 1's collection."""

    def __init__(self, name: str, plan: dict, collected: dict, wire: Wire, state: _State):
        self.__name__, self.plan, self.collected, self.wire, self.state = name, plan, collected, wire, state

    def _entry(self, call_key: str) -> dict | None:
        calls, state = self.plan["calls"], self.state
        for index, call in enumerate(calls):   # this test's calls first, in order
            if call["case"] == state.case and call["name"] == self.__name__ and call["key"] == call_key \
                    and index not in state.used:
                state.used.add(index)
                return self.collected["calls"][index] if index < len(self.collected["calls"]) else None
        for build in self.collected.get("builds", []):   # the networks of the runs handed in
            if isinstance(build, dict) and build.get("name") == self.__name__ and build.get("key") == call_key:
                return build
        for index, call in enumerate(calls):
            if call["name"] == self.__name__ and call["key"] == call_key and index < len(self.collected["calls"]):
                return self.collected["calls"][index]
        return None

    def __call__(self, *args, **kwargs):
        import keras

        name = self.__name__
        entry = self._entry(key([list(args), kwargs], self.state.numbers))
        if not isinstance(entry, dict) or not isinstance(entry.get("result"), (dict, list, str, int, float, bool, type(None))):
            raise AssertionError(f"grading has no result of {name} for this check: the notebook stopped before "
                                 f"{name} could be called with these arguments")
        called = entry.get("called") or []
        if called:
            raise AssertionError(f"no credit: {name} calls labkit's own code ({', '.join(map(str, called[:3]))}). "
                                 "Write it yourself from keras.layers and NumPy.")
        result = entry.get("result")
        if isinstance(result, dict) and result.get(TAG) == "raised":
            kind = getattr(builtins, str(result.get("type")), None)
            kind = kind if isinstance(kind, type) and issubclass(kind, Exception) else AssertionError
            raise kind(f"{name} raised {result.get('type')}: {result.get('message', '')}")
        if isinstance(result, dict) and result.get(TAG) == "missing":
            raise AssertionError(f"{name} is not defined: run its cell, and keep its name")
        if isinstance(result, dict) and result.get(TAG) == "unsupported":
            raise AssertionError(f"{name} returned a {result.get('type')}, which grading cannot read back")
        inputs = [a for a in args if isinstance(a, keras.KerasTensor)]
        try:
            value = self.wire.decode(result, inputs=inputs)
            self._apply(entry.get("after") or {}, args)
        except (WireError, ValueError, TypeError, KeyError) as err:
            raise AssertionError(f"{name}: {err}") from None
        return value

    def _apply(self, after: dict, args) -> None:
        """What the call did to its arguments in phase 1, done to the test's own."""
        import keras

        for index, change in after.items():
            arg = args[int(index)] if int(index) < len(args) else None
            if isinstance(change, dict) and change.get(TAG) == "state" and isinstance(arg, np.random.Generator):
                arg.bit_generator.state = change["state"]
            elif isinstance(change, dict) and change.get(TAG) == "trainable" and isinstance(arg, keras.Model):
                for layer, flag in zip(arg.layers, change["flags"]):
                    layer.trainable = bool(flag)
            elif isinstance(arg, np.ndarray):
                changed = self.wire.decode(change)
                if np.shape(changed) == arg.shape:
                    np.copyto(arg, changed, casting="unsafe")


def _value(wire: Wire, value, handed_in: dict, records: dict, data_dir=None):
    again = lambda v: _value(wire, v, handed_in, records, data_dir)  # noqa: E731
    if isinstance(value, list):
        return [again(v) for v in value]
    if isinstance(value, dict):
        kind = value.get(TAG)
        if kind == "run":
            return _run_view(str(value.get("name")), handed_in, records, data_dir)
        if kind == "tuple":
            return tuple(again(v) for v in value["v"])
        if kind == "dict":
            return {wire.decode(k) if not isinstance(k, list) else tuple(k): again(v) for k, v in value["items"]}
        if kind == "unsupported":
            return None
    return wire.decode(value)


def _message(err: Exception) -> str:
    text = str(err).strip().strip("'")
    return f"{type(err).__name__}: {text}" if text else f"{type(err).__name__} (the check gave no reason)"


def score(autograder, plan_dir, collected_dir, notebook, handed_in: dict, data_dir=None,
          raised=None) -> Outcome:
    """Score one collected notebook (phase 2)."""
    from otter.test_files.abstract_test import TestCaseResult

    from labkit.grading.plan import test_files
    from labkit.grading.statics import check_notebook

    autograder, plan_dir = Path(autograder), Path(plan_dir)
    outcome = Outcome(raised=list(raised or []))
    refused = check_notebook(notebook, autograder)
    if refused:
        return Outcome.failed(f"the notebook {refused[0]}")
    plan = Wire(plan_dir).load()
    wire = Wire(collected_dir)
    try:
        collected = wire.load()
        if not isinstance(collected, dict) or not isinstance(collected.get("calls"), list) \
                or not isinstance(collected.get("values"), dict) or not isinstance(collected.get("builds", []), list):
            raise WireError("the collection is malformed")
    except WireError as err:
        collected, reason = {"calls": [], "values": {}, "builds": []}, str(err)
        outcome.reason = f"nothing was collected from the notebook ({reason})"
    state = _State()
    env = {}
    for name, spec in plan["names"].items():
        if spec["kind"] == "function":
            env[name] = _Replay(name, plan, collected, wire, state)
        else:
            value = collected["values"].get(name, {TAG: "missing"})
            try:
                env[name] = _Missing(name) if value == {TAG: "missing"} else \
                    _value(wire, value, handed_in, outcome.records, data_dir)
            except (WireError, ValueError, TypeError, KeyError, AttributeError):
                env[name] = _Missing(name)
    files = test_files(autograder, plan_dir / "scored")
    for question, test_file in files.items():
        results = []
        for case in test_file.test_cases:
            state.case, state.numbers = f"{question}/{case.name}", Numbering()
            try:
                case.body.call_func(env)
                results.append(TestCaseResult(test_case=case, message="", passed=True))
            except Exception as err:  # every failure of a test is a lost point, never a crash
                results.append(TestCaseResult(test_case=case, message=_message(err), passed=False))
        test_file.test_case_results = results
        messages = [r.message for r in results if not r.passed]
        outcome.questions[question] = {"score": float(test_file.score), "possible": float(test_file.possible),
                                       "message": messages[0] if messages else ""}
    return outcome


def _raised(path) -> list[dict]:
    """The cells phase 1 says raised: data from the sandbox, kept to what the log needs."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return [{"cell": r.get("cell"), "ename": str(r.get("ename", ""))[:100], "evalue": str(r.get("evalue", ""))[:500]}
            for r in found if isinstance(r, dict)][:50] if isinstance(found, list) else []


def run_job(job_file) -> None:
    """Score one notebook as its ``job.json`` (``labkit.grading.phases``) says; write its result."""
    import time

    job = json.loads(Path(job_file).read_text())
    started = time.monotonic()
    try:
        outcome = score(job["autograder"], job["plan"], job["collected"], job["notebook"], job["runs"],
                        job.get("data_dir"), _raised(job["raised"]))
    except Exception as err:  # a collection that breaks scoring scores zero; the next one is scored
        outcome = Outcome.failed(f"scoring failed: {type(err).__name__}: {str(err)[:300]}")
    outcome.seconds = time.monotonic() - started
    result = Path(job["result"])
    result.with_suffix(".tmp").write_text(json.dumps(outcome.to_dict()))
    result.with_suffix(".tmp").replace(result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", nargs="+", required=True, help="job.json files, scored one after the other")
    args = parser.parse_args()
    for job_file in args.batch:
        run_job(job_file)
        import keras

        keras.backend.clear_session()   # the next notebook starts from no layers
