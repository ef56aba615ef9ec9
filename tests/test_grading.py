"""Instructor grading (otter-grader): assign offline, no leaks, tests that tell solved from
unsolved, and batch grading of correct, unsolved, crashing, endless and escaping submissions."""
import json
import re
import types
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from labkit import grading

pytestmark = pytest.mark.slow   # trains or grades runs: long, so it starts first on CI

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LABS = [p.stem for p in grading.graded_notebooks()]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return grading.assign(tmp_path_factory.mktemp("assign") / "dist", log=lambda *_: None)


def test_every_lab_01_to_10_has_graded_questions():
    assert LABS == ["01_cnn_building_blocks", "02_alexnet", "03_vgg", "04_googlenet", "05_resnet",
                    "06_data_augmentation", "07_compare_architectures", "08_transfer_learning", "09_modern_cnns",
                    "10_what_the_network_learned"]
    for lab in LABS:
        master = grading.graded_notebooks()[LABS.index(lab)]
        assert grading.questions(master), lab


@pytest.mark.parametrize("lab", LABS)
def test_assign_writes_clean_student_and_full_autograder(dist, lab):
    master = [p for p in grading.graded_notebooks() if p.stem == lab][0]
    student = dist / "student" / f"{lab}.ipynb"
    grader = dist / "autograder" / lab
    assert grading.leaks(master, student) == []
    names = [q["name"] for q in grading.questions(master)]
    assert [q["name"] for q in json.loads((grader / "questions.json").read_text())] == names
    nb = nbformat.read(student, as_version=4)
    assert not any(c.cell_type == "raw" and "BEGIN" in c.source for c in nb.cells), "otter markup left over"
    assert "colab.research.google.com" not in nb.cells[0].source, "the badge would open the solutions"
    assert [c.source for c in nb.cells if c.source.startswith("grader.check(")] == [f'grader.check("{n}")' for n in names]
    public = nb.metadata["otter"]["tests"]
    with zipfile.ZipFile(grader / "autograder.zip") as z:
        full = {Path(n).stem: z.read(n).decode() for n in z.namelist() if n.startswith("tests/")}
    assert sorted(full) == sorted(names) == sorted(public)
    for name in names:
        assert (dist / "student" / "tests" / f"{name}.py").read_text() == public[name]
        assert "hidden=True" in full[name], f"{lab}/{name} has no hidden test"
        assert "hidden=True" not in public[name], f"{lab}/{name}: a hidden test reached the student version"
        assert "hidden=False" in public[name], f"{lab}/{name} has no public test"


def test_leak_check_catches_a_solution_and_a_hidden_test(dist, tmp_path):
    master = [p for p in grading.graded_notebooks() if p.stem == "05_resnet"][0]
    nb = nbformat.read(dist / "student" / "05_resnet.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "y = layers.ReLU()(conv_bn(x, filters, 3, stride))\ndef test_basic_block_identity(): pass"))
    leaky = tmp_path / "leaky.ipynb"
    nbformat.write(nb, leaky)
    problems = grading.leaks(master, leaky)
    assert any("solution line" in p for p in problems) and "hidden test test_basic_block_identity" in problems


def test_assign_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(grading.GradingError, match="was not made by"):
        grading.assign(tmp_path, log=lambda *_: None)
    assert (tmp_path / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- the tests tell solved from unsolved
def _answer_env(notebook: Path, question: str, context: dict) -> dict:
    """The globals after running the answer cells (the code cell before each check) of the
    notebook's questions up to ``question``: a later answer may use an earlier one (VGG's stage)."""
    cells = nbformat.read(notebook, as_version=4).cells
    answered = {q["name"] for q in grading.questions(NOTEBOOKS / f"{notebook.stem}.ipynb") if q["answered"]}
    env = dict(context)
    for i, cell in enumerate(cells):
        name = re.fullmatch(r'grader\.check\("(\w+)"\)', cell.source.strip())
        if name and name.group(1) not in answered:  # it checks a run: no answer to execute
            if name.group(1) == question:
                return env
        elif name:
            answer = next(c for c in reversed(cells[:i]) if c.cell_type == "code")
            exec(compile(answer.source, f"<{notebook.stem}:{name.group(1)}>", "exec"), env)
            if name.group(1) == question:
                return env
    raise AssertionError(f"{notebook.name} has no check for {question}")


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The lab's run, as the answer cells and the *_trained checks read it (``_lab_context``
    gives each lab its own)."""
    folder = tmp_path_factory.mktemp("run")
    record = {"model": "alexnet", "profile": "smoke", "best_val_accuracy": 0.125, "best_epoch": 3,
              "epochs_run": 4, "config": {"epochs": 4}}
    (folder / "results.json").write_text(json.dumps(record))
    # and what the labs import before their exercises
    return {"run": types.SimpleNamespace(out_dir=folder, results=record), "np": np}


def _score(dist, lab, notebook, context) -> dict:
    """``{question: (score, possible, [failure messages])}`` from the autograder's test files."""
    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

    scores = {}
    with zipfile.ZipFile(dist / "autograder" / lab / "autograder.zip") as z:
        for member in sorted(n for n in z.namelist() if n.startswith("tests/")):
            name = Path(member).stem
            path = dist / f"{lab}-{name}.py"
            path.write_bytes(z.read(member))
            test = create_test_file(str(path), NBMetadataConfig())
            test.run(_answer_env(notebook, name, context))
            failures = [r.message.strip().splitlines()[-1] for r in test.test_case_results if not r.passed]
            scores[name] = (test.score, test.possible, failures)
    return scores


# the network each lab trains, and what its run record holds (smoke profile)
LAB_NETWORKS = {"02_alexnet": ("alexnet", "my_alexnet", {}), "03_vgg": ("vgg11", "my_vgg11", {}),
                "04_googlenet": ("googlenet", "my_googlenet", {"aux_classifiers": True}),
                "05_resnet": ("resnet18", "my_resnet18", {})}


def _lab_context(dist, lab, context) -> dict:
    """``context`` with the run that the lab's training cell leaves when the solution is in place:
    it trained the solution's network."""
    if lab not in LAB_NETWORKS:
        return context
    from labkit.models.provenance import fingerprint, float32_policy

    model, builder, options = LAB_NETWORKS[lab]
    experiment = {}
    if lab == "05_resnet":  # the degradation experiment's four runs, which the last answer reads
        final = {(False, 8): 0.9, (False, 14): 0.7, (True, 8): 0.92, (True, 14): 0.95}
        experiment = dict(shallow=8, deep=14, runs={key: types.SimpleNamespace(
            history=pd.DataFrame({"epoch": [0, 1], "accuracy": [0.3, acc], "val_accuracy": [0.2, 0.5]}))
            for key, acc in final.items()})
    context = {**context, **experiment}
    master = dist / "autograder" / lab / f"{lab}.ipynb"
    last = [q["name"] for q in json.loads((dist / "autograder" / lab / "questions.json").read_text())][-1]
    env = _answer_env(master, last, context)
    from labkit.train import make_config

    size = make_config(model, "smoke").image_size
    with float32_policy():
        net = env[builder](num_classes=17, input_shape=(size, size, 3), **options)
    record = {**context["run"].results, "model": model, "image_size": size,
              "config": {"epochs": 4, "classes": None, "model_options": options}}
    network = {"source": "own", "builder": builder, "fingerprint": fingerprint(net), "note": None}
    folder = context["run"].out_dir.parent / lab
    folder.mkdir(exist_ok=True)
    (folder / "results.json").write_text(json.dumps({**record, "network": network}))
    lab_context = {**context, "run": types.SimpleNamespace(out_dir=folder, results=record, network=network)}
    return {**lab_context, **experiment}


@pytest.mark.parametrize("lab", LABS)
def test_solutions_pass_and_student_versions_fail_every_question(dist, lab, context):
    context = _lab_context(dist, lab, context)
    solved = _score(dist, lab, dist / "autograder" / lab / f"{lab}.ipynb", context)
    unsolved = _score(dist, lab, dist / "student" / f"{lab}.ipynb", context)
    assert sorted(solved) == sorted(q["name"] for q in json.loads((dist / "autograder" / lab / "questions.json").read_text()))
    for name, (score, possible, failures) in solved.items():
        assert score == possible > 0 and not failures, (name, failures)
        assert unsolved[name][0] == 0 and unsolved[name][1] == possible, (name, unsolved[name])
        assert unsolved[name][2], f"{name}: no test failed on the unsolved version"


# ---------------------------------------------------------------- batch grading, end to end
def _with_cell(notebook: Path, after: str, source: str, out: Path, replace: bool = False) -> Path:
    """``notebook`` with a code cell ``source`` after the cell containing ``after`` (or instead of it)."""
    nb = nbformat.read(notebook, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if after in c.source)
    if replace:
        nb.cells[i].source = source.replace("{cell}", nb.cells[i].source)
    else:
        nb.cells.insert(i + 1, nbformat.v4.new_code_cell(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out


def test_grade_folder_correct_unsolved_crashing_endless_escaping(dist, tmp_path, real_data_dir):
    lab = "01_cnn_building_blocks"
    solution, student = dist / "autograder" / lab / f"{lab}.ipynb", dist / "student" / f"{lab}.ipynb"
    subs = tmp_path / "submissions"
    (subs / "ada").mkdir(parents=True)
    nbformat.write(nbformat.read(solution, as_version=4), subs / "ada" / f"{lab}.ipynb")
    nbformat.write(nbformat.read(student, as_version=4), subs / "ben.ipynb")  # loose file: student "ben"
    # the answer cell raises before it defines output_size
    _with_cell(solution, "def output_size(", "import labkit_no_such_module\n{cell}", subs / "cara" / "lab01.ipynb",
               replace=True)
    # an endless loop that sleeps: the time limit is what is tested, and a spinning one would take
    # a core from the tests beside it for the whole limit
    _with_cell(solution, "def output_size(", "import time\nwhile True:\n    time.sleep(0.5)",
               subs / "dan" / f"{lab}.ipynb")
    outside = tmp_path / "escaped.txt"
    _with_cell(solution, "def output_size(", f"open({str(outside)!r}, 'w').write('out')",
               subs / "eve" / f"{lab}.ipynb")
    (subs / "eve" / "notes.ipynb").write_text("{not json")
    # labkit's answer under another name, defined in a cell of its own: seen by its code
    _with_cell(student, "def output_size(", "_formula = conv_output_size\n\ndef output_size(W, F, P, S):\n"
               "    return _formula(W, F, P, S)\n", subs / "fay" / f"{lab}.ipynb", replace=True)
    # otter's test runner replaced in the kernel: the tests do not run there any more
    _with_cell(student, "def output_size(", "import otter.test_files.exception_test as t\n"
               "t.ExceptionTestFile.run = lambda self, env: None", subs / "gus" / f"{lab}.ipynb")
    # the instructor's solution looked for from inside the sandbox, and imported if found
    finder = ("import json, os\nfound = None\n"
              "for top in ('/tmp', '/work', '/root', '/home', os.path.expanduser('~')):\n"
              "    for folder, _, files in os.walk(top):\n"
              "        for name in files:\n"
              f"            if name == '{lab}.ipynb' and 'autograder' in folder:\n"
              "                found = os.path.join(folder, name)\n"
              "if found:\n"
              "    cells = json.load(open(found))['cells']\n"
              "    code = next(''.join(c['source']) for c in cells if 'def output_size(' in ''.join(c['source']))\n"
              "    open('solved.py', 'w').write(code)\n"
              "    from solved import output_size\n")
    _with_cell(student, "def output_size(", finder, subs / "kim" / f"{lab}.ipynb")
    # more memory than grading allows (3 GiB here; a lab-01 notebook holds about 1)
    _with_cell(solution, "def output_size(", "import numpy as np\nhog = np.ones(2**29)\nimport time\ntime.sleep(5)",
               subs / "hal" / f"{lab}.ipynb")
    lines = []
    table = grading.grade(subs, tmp_path / "grades.csv", autograder=dist / "autograder", timeout=90, jobs=2,
                          data_dir=real_data_dir, profile="smoke", memory=3 * 2**30, log=lines.append)
    saved = pd.read_csv(tmp_path / "grades.csv", keep_default_na=False)
    assert list(saved.columns) == grading.CSV_COLUMNS and len(saved) == len(table) == 18
    rows = saved[saved["question"] == "output_size"].set_index("student")
    assert rows.loc["ada", "score"] == 2 and rows.loc["ada", "max_score"] == 2 and rows.loc["ada", "message"] == ""
    assert rows.loc["ben", "score"] == 0 and rows.loc["ben", "message"]
    assert rows.loc["cara", "score"] == 0 and rows.loc["cara", "message"]
    assert rows.loc["dan", "score"] == 0 and "time limit" in rows.loc["dan", "message"]
    assert rows.loc["eve", "score"] == 0 and "outside the submission folder" in rows.loc["eve", "message"]
    assert not outside.exists()
    assert rows.loc["fay", "score"] == 0 and "no credit" in rows.loc["fay", "message"]
    assert rows.loc["gus", "score"] == 0 and "does not allow" in rows.loc["gus", "message"]
    assert rows.loc["kim", "score"] == 0
    assert rows.loc["hal", "score"] == 0 and "memory" in rows.loc["hal", "message"]
    sandboxed = grading.box.command(tmp_path, [], ["true"], []) is not None
    ran = rows.drop("gus")["isolation"]   # gus never ran: the source check refused it first
    assert set(ran) == {"bubblewrap"} if sandboxed else all(r.startswith("process only") for r in ran)
    assert rows.loc["gus", "isolation"].startswith("not run")
    totals = saved[saved["question"] == "TOTAL"].set_index("student")["score"]
    assert totals.to_dict() == {"ada": 2, "ben": 0, "cara": 0, "dan": 0, "eve": 0, "fay": 0, "gus": 0, "hal": 0, "kim": 0}
    log = "\n".join(lines)
    assert "cara / 01_cnn_building_blocks: a cell raised ModuleNotFoundError" in log
    assert "dan / 01_cnn_building_blocks: stopped after the 90 s time limit" in log
    assert "eve / 01_cnn_building_blocks: tried to write outside the submission folder" in log
    assert "notes.ipynb: not one of the graded labs" in log
    # the unsolved student version runs top to bottom: only its checks fail, no cell raises
    assert not any(("ada /" in line or "ben /" in line) and "raised" in line for line in lines), log


def test_grade_refuses_bad_input(tmp_path, dist):
    with pytest.raises(grading.GradingError, match="is not a folder"):
        grading.grade(tmp_path / "missing", autograder=dist / "autograder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(grading.GradingError, match="no lab notebook"):
        grading.grade(tmp_path / "empty", tmp_path / "g.csv", autograder=dist / "autograder", log=lambda *_: None)
    assert not (tmp_path / "g.csv").exists()


def test_cli_assign_and_grade(tmp_path, capsys, monkeypatch, real_data_dir):
    from labkit.__main__ import main

    lab01 = grading.graded_notebooks()[0]
    monkeypatch.chdir(tmp_path)  # as an instructor would: relative default folders
    assert main(["assign", str(lab01)]) == 0
    assert (tmp_path / "dist" / "student" / lab01.name).is_file()
    assert "01_cnn_building_blocks: 1 question" in capsys.readouterr().out
    (tmp_path / "subs" / "ben").mkdir(parents=True)
    nbformat.write(nbformat.read(tmp_path / "dist" / "student" / lab01.name, as_version=4),
                   tmp_path / "subs" / "ben" / lab01.name)
    assert main(["grade", "subs", "--profile", "smoke", "--timeout", "300", "--data-dir", str(real_data_dir)]) == 0
    grades = pd.read_csv(tmp_path / "grades.csv", keep_default_na=False)
    row = grades[grades["question"] == "output_size"].iloc[0]
    assert row["student"] == "ben" and row["score"] == 0 and row["message"].startswith("AssertionError"), row.to_dict()
    assert main(["grade", str(tmp_path / "nowhere"), "--autograder", str(tmp_path / "dist" / "autograder")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grade", str(tmp_path), "--timeout", "-5"])
    assert "must be positive" in capsys.readouterr().err


def test_grader_cell_never_breaks_a_lab(monkeypatch, capsys, tmp_path):
    import otter

    from labkit import nbtools

    monkeypatch.chdir(grading.graded_notebooks()[0].parent)  # where the lab runs
    assert isinstance(nbtools.grader("01_cnn_building_blocks.ipynb"), otter.Notebook)
    monkeypatch.chdir(tmp_path)  # a renamed or moved notebook: otter cannot find its tests
    nbtools.grader("01_cnn_building_blocks.ipynb").check("output_size")
    assert "cannot run here" in capsys.readouterr().out

    def colab(*args, **kwargs):
        raise ValueError("Tests directory ./tests does not exist")

    monkeypatch.setattr(otter, "Notebook", colab)  # what otter does on Colab without tests/
    stand_in = nbtools.grader("01_cnn_building_blocks.ipynb")
    stand_in.check("output_size")
    assert "cannot run here: Tests directory ./tests does not exist" in capsys.readouterr().out


@pytest.mark.parametrize("lab", ["02_alexnet", "03_vgg", "04_googlenet"])
def test_lab_solutions_start_from_the_reference_networks_weights(dist, lab, context):
    """With the same seed, the solution networks of labs 02-04 start from exactly the weights of
    labkit's reference network, so with the lab's recipe they train as the reference does (the
    README's results hold for them). ResNet-18's solution uses Keras' default initialisation, not
    labkit's (He-normal, zero-initialised last BN scale), so lab 05's run was measured."""
    import keras
    import numpy as np
    from labkit import models

    model, builder, options = LAB_NETWORKS[lab]
    env = _answer_env(dist / "autograder" / lab / f"{lab}.ipynb",
                      [q["name"] for q in json.loads((dist / "autograder" / lab / "questions.json").read_text())][-1],
                      _lab_context(dist, lab, context))
    keras.utils.set_random_seed(3)
    mine = env[builder](num_classes=17, input_shape=(96, 96, 3), **options)
    keras.utils.set_random_seed(3)
    reference = models.build(model, num_classes=17, input_shape=(96, 96, 3), **options)
    ours, theirs = mine.get_weights(), reference.get_weights()
    assert len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("lab, question, called, cheat", [
    ("02_alexnet", "alexnet", "labkit.models.build", "from labkit import models as m\n\n"
                              "def my_alexnet(num_classes=1000, input_shape=(227, 227, 3)):\n"
                              "    return m.build('alexnet', num_classes=num_classes, input_shape=input_shape)\n"),
    ("05_resnet", "basic_block", "labkit.models.resnet.residual_block", "from labkit.models.resnet import residual_block\n\n"
                                 "def basic_block(x, filters, stride):\n"
                                 "    return residual_block(x, filters, stride, 'basic', 'mine')\n"),
    ("06_data_augmentation", "pca_color", "labkit.augment.pca_color_augment",
     "import labkit.augment as aug\n\n"
     "def pca_color(image, eigenvalues, eigenvectors, rng, std=0.1):\n"
     "    return aug.pca_color_augment(image[None], eigenvalues, eigenvectors, std, rng)[0]\n"),
    ("10_what_the_network_learned", "occlusion_drop", "labkit.visualize.occlusion",
     "import labkit.visualize\n\n"
     "def occlusion_drop(model, image, top, left, patch):\n"
     "    drop, _ = labkit.visualize.occlusion(model, image, patch=patch, stride=patch)\n"
     "    return float(drop[top, left])\n"),
    ("09_modern_cnns", "squeeze_excite", "labkit.models.senet.squeeze_excite",
     "from labkit.models.senet import squeeze_excite\n\n"
     "def my_squeeze_excite(x, ratio=16):\n"
     "    return squeeze_excite(x, x.shape[-1] // ratio)\n"),
    ("06_data_augmentation", "random_crop", "labkit.augment.random_crop_and_flip",
     "from labkit.augment import random_crop_and_flip as crop_and_flip\n\n"
     "def random_crop(image, crop_size, rng):\n"
     "    return crop_and_flip(image[None], crop_size, rng)[0]\n")])
def test_calling_labkits_reference_gets_no_credit(dist, lab, question, called, cheat, context, tmp_path):
    """An answer that calls labkit's network or block scores zero on every test of the question,
    each naming the call (the solution scores full marks on the same tests: above)."""
    solution = dist / "autograder" / lab / f"{lab}.ipynb"
    nb = nbformat.read(solution, as_version=4)
    cells = nb.cells
    check = next(i for i, c in enumerate(cells) if c.source.strip() == f'grader.check("{question}")')
    answer = next(i for i in range(check - 1, -1, -1) if cells[i].cell_type == "code")
    cells[answer].source = cheat
    cheated = tmp_path / f"{lab}.ipynb"
    nbformat.write(nb, cheated)
    context = _lab_context(dist, lab, context)
    score, possible, failures = _score(dist, lab, cheated, context)[question]
    assert score == 0 < possible and failures and all(called in f for f in failures), failures
