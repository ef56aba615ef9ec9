"""Instructor grading with otter-grader: student versions, hidden tests, offline batch grading.

The lab notebooks in ``notebooks/`` are otter-grader *master* notebooks: each graded exercise is
a question (``# BEGIN QUESTION`` ... ``# END QUESTION`` raw cells) with its solution between
``# BEGIN SOLUTION`` / ``# END SOLUTION`` and its tests, public ones (students run them with
``grader.check("lrn")``) and hidden ones (``hidden: true``, kept by the instructor).

    python -m labkit assign [--out dist]              # dist/student/, dist/autograder/
    python -m labkit release [--out dist/release]     # what students get, without solutions
    python -m labkit grade SUBMISSIONS_DIR [--out grades.csv] [--retrain] [--require-sandbox]

One module a step:

    labkit.grading.masters      master notebooks: questions, solutions, hidden tests, leak check
    labkit.grading.assign       otter assign: student versions and autograders
    labkit.grading.release      the student release: notebooks, public tests, labkit, no solutions
    labkit.grading.submissions  what students handed in: notebooks and run folders
    labkit.grading.plan         phase 0: the calls the tests make, recorded against the solution
    labkit.grading.phases       driving the phases for each notebook (phase 2 in batches)
    labkit.grading.box          the OS sandbox (bubblewrap) and the time and memory limits
    labkit.grading.worker       phase 1, in the sandbox: execute the notebook, then collect
    labkit.grading.collect      phase 1's last cell: the plan's calls and values, kept as data
    labkit.grading.wire         values between the phases: JSON, .npz without pickles, networks
    labkit.grading.statics      the check of the cells' source (what a process cannot watch)
    labkit.grading.score        phase 2, in a fresh process: runs checked, tests run on the data
    labkit.grading.outcome      a graded notebook as data (``Outcome``) and its grade-book rows
    labkit.grading.grade        grade a folder of submissions into a CSV
"""
from labkit.grading.assign import DIST_MARKER, assign  # noqa: F401
from labkit.grading.grade import CSV_COLUMNS, DEFAULT_TIMEOUT, grade, grade_notebook  # noqa: F401
from labkit.grading.masters import GradingError, graded_notebooks, is_master, leaks, questions  # noqa: F401
from labkit.grading.outcome import Outcome  # noqa: F401
from labkit.grading.release import course_config, release, release_leaks  # noqa: F401
from labkit.grading.submissions import find_submissions, run_folders  # noqa: F401
