"""Grading without retraining: run records checked for integrity, outcomes as data."""
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from labkit import grading
from labkit.grading.outcome import Outcome, rows
from labkit.train import integrity
from test_train import small_run

pytestmark = pytest.mark.slow   # trains or grades runs: long, so it starts first on CI

EXPECTED = [{"name": "conv", "points": 2.0}, {"name": "trained", "points": 1.0}]


@pytest.fixture(scope="module")
def genuine(tmp_path_factory, real_data_dir):
    """A finished smoke run, in a folder with the name its config gives."""
    from labkit import train

    folder = tmp_path_factory.mktemp("runs")
    cfg = dict(epochs=2, steps_per_epoch=2, augmentation="light")
    name = train.run_name(train.make_config("resnet18", "smoke", image_size=32, batch_size=16, **cfg))
    small_run(real_data_dir, folder / name, model="resnet18", **cfg)   # lab 05's network
    return folder / name


def tampered(genuine, tmp_path, change) -> Path:
    copy = tmp_path / genuine.name
    shutil.copytree(genuine, copy)
    change(copy)
    return copy


def edit_record(**fields):
    def change(run):
        record = json.loads((run / "results.json").read_text())
        record.update(fields)
        (run / "results.json").write_text(json.dumps(record))
    return change


def perfect_predictions(run, key):
    """Replace one set of kept test predictions by a perfect score (and the record's top-1 with it,
    so that the file still agrees with the record)."""
    import numpy as np

    from labkit.train import PREDICTIONS

    with np.load(run / PREDICTIONS) as kept:
        arrays = dict(kept)
    arrays[key] = np.eye(arrays[key].shape[1], dtype=np.float32)[arrays["labels"]]
    np.savez(run / PREDICTIONS, **arrays)
    edit_record(**{"test_top1" if key == "probabilities" else "test_top1_10crop": 1.0})(run)


def test_a_genuine_run_passes_every_check(genuine, real_data_dir):
    assert integrity.check_run(genuine, data_dir=real_data_dir) == []


@pytest.mark.parametrize("change", [
    edit_record(test_top1=0.99),                                           # a better score typed in
    edit_record(epochs_run=1),                                             # history has 2 epochs
    edit_record(image_size=64),                                            # not its config's size
    edit_record(best_val_accuracy=0.99),                                   # not the history's best
    lambda run: (run / "best.keras").write_bytes(b"not a model"),          # a damaged or foreign model
    lambda run: (run / "history.csv").unlink(),
    lambda run: (run / "results.json").write_text("{"),
    lambda run: run.rename(run.with_name("resnet18_smoke_64px")),         # renamed to pass as another run
    lambda run: perfect_predictions(run, "probabilities"),                # what the notebook shows, typed in
    lambda run: perfect_predictions(run, "probabilities_10crop"),
    lambda run: (run / "test_predictions.npz").write_bytes(b"PK\x03\x04"),  # damaged
], ids=["score", "epochs", "size", "best", "model", "history", "record", "renamed", "predictions", "10-crop",
        "damaged-predictions"])
def test_a_tampered_run_is_rejected_with_a_reason(genuine, tmp_path, real_data_dir, change):
    copy = tampered(genuine, tmp_path, lambda run: None)
    change(copy)
    if not copy.exists():
        copy = copy.with_name("resnet18_smoke_64px")
    problems = integrity.check_run(copy, data_dir=real_data_dir)
    assert problems and all(isinstance(p, str) and p for p in problems)


def test_scores_come_from_the_outcome_not_from_its_wording():
    graded = {"conv": {"score": 2.0, "possible": 2.0, "message": ""},
              "trained": {"score": 1.0, "possible": 1.0, "message": ""}}
    # reasons worded like the old fatal messages do not zero a lab: only the flag does
    fine = Outcome(questions=graded, reason="tried to stopped after", raised=[])
    assert [r["score"] for r in rows("ada", "02", EXPECTED, fine)] == [2.0, 1.0]
    for reason in ("stopped after the 60 s time limit", "any words at all", ""):
        fatal = Outcome(questions=graded, fatal=True, reason=reason)
        assert [r["score"] for r in rows("ada", "02", EXPECTED, fatal)] == [0.0, 0.0]
    lost = {**graded, "trained": {"score": 0.0, "possible": 1.0, "message": "AssertionError: the run x was rejected"}}
    refused = Outcome(questions=lost, raised=[{"cell": 40, "ename": "TrainingRefused", "evalue": "whatever"}],
                      records={"alexnet_smoke_67px": ["best.keras scores 5% on the test split"]})
    book = rows("ada", "02", EXPECTED, refused)
    # each question speaks for itself: a missing run is not why a code question lost points
    assert [r["score"] for r in book] == [2.0, 0.0] and book[0]["message"] == ""
    assert book[1]["message"] == lost["trained"]["message"]
    assert Outcome.from_dict(json.loads(json.dumps(refused.to_dict()))) == refused


def test_a_record_whose_fingerprint_names_another_network_is_rejected(genuine, tmp_path):
    copy = tampered(genuine, tmp_path, edit_record(network={"source": "own", "builder": "my_resnet18",
                                                            "fingerprint": "0badc0de", "note": None}))
    assert integrity.check_network(genuine) == [] and integrity.check_network(copy)


def test_runs_are_graded_in_the_profile_they_were_trained_in(genuine, tmp_path):
    from labkit.grading.phases import runs_profile

    assert runs_profile({genuine.name: genuine}) == "smoke" and runs_profile({}) is None


@pytest.fixture(scope="module")
def lab02_run(tmp_path_factory, real_data_dir):
    """Lab 02's solution notebook executed as a student would (smoke profile): its run folder."""
    import nbclient

    dist = grading.assign(tmp_path_factory.mktemp("assign") / "dist", notebooks=[
        p for p in grading.graded_notebooks() if p.stem == "02_alexnet"], log=lambda *_: None)
    work = tmp_path_factory.mktemp("student")
    solution = dist / "autograder" / "02_alexnet" / "02_alexnet.ipynb"
    nb = nbformat.read(solution, as_version=4)
    env = dict(LABKIT_PROFILE="smoke", LABKIT_OFFLINE="1", LABKIT_DATA_DIR=str(real_data_dir),
               LABKIT_OUTPUTS_DIR=str(work / "outputs"))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    (run,) = [p for p in (work / "outputs").iterdir() if (p / "results.json").is_file()]
    return dist, solution, run


def test_grade_reads_genuine_records_and_zeroes_tampered_and_missing_ones(lab02_run, tmp_path, real_data_dir):
    dist, solution, run = lab02_run
    subs = tmp_path / "submissions"
    for student in ("ada", "ben", "cara"):
        (subs / student).mkdir(parents=True)
        shutil.copy2(solution, subs / student / "02_alexnet.ipynb")
    shutil.copytree(run, subs / "ada" / "outputs" / run.name)                  # genuine
    shutil.copytree(run, subs / "cara" / "outputs" / run.name)                 # tampered
    edit_record(test_top1=0.97)(subs / "cara" / "outputs" / run.name)
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    lines = []
    # --profile cpu, as for a class that trained on laptops: the smoke runs handed in are still found
    table = grading.grade(subs, tmp_path / "grades.csv", autograder=dist / "autograder", timeout=600, jobs=2,
                          data_dir=real_data_dir, profile="cpu", log=lines.append)
    scores = table.pivot_table(index="student", columns="question", values="score")
    questions = grading.questions(grading.graded_notebooks()[1])
    assert [q["name"] for q in questions][-1] == "alexnet_trained"
    full = {q["name"]: q["points"] for q in questions}
    assert scores.loc["ada"].to_dict() == {**full, "TOTAL": sum(full.values())}
    for student in ("ben", "cara"):   # the code exercises still count; the trained check does not
        assert scores.loc[student, "alexnet_trained"] == 0
        assert all(scores.loc[student, q] == p for q, p in full.items() if q != "alexnet_trained")
    messages = table.set_index(["student", "question"])["message"]
    assert run.name in messages["cara", "alexnet_trained"] and messages["ben", "alexnet_trained"]
    assert {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()} == before   # nothing handed in changes
    flags = table[table["question"] == "TOTAL"].set_index("student")["flags"]
    assert "best.keras is identical to cara" in flags["ada"] and "ada" in flags["cara"] and not flags["ben"]
    assert not any("trains" in line or "epoch" in line.lower() for line in lines if "ada" in line)
