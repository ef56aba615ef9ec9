"""labkit's start-up: TensorFlow's native log filtered out, labkit's warnings on one line."""
import os
import subprocess
import sys
import warnings

from labkit import LabkitWarning, startup

NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795860926.718502   30770 port.cc:153] oneDNN custom operations are on.",
    "E0000 00:00:1795860922.004904   30743 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
    "2019-08-26 11:45:17.907378: I tensorflow/stream_executor/platform/default/dso_loader.cc:44] Successfully",
]
OURS = ["labkit: No GPU found.", "Traceback (most recent call last):", "E0000 is not a log line without the rest"]


def test_native_log_lines_are_recognised_and_nothing_else():
    assert all(startup.NATIVE_LOG.match(line) for line in NATIVE)
    assert not any(startup.NATIVE_LOG.match(line) for line in OURS)


def test_filter_drops_native_lines_written_to_descriptor_2_and_keeps_the_rest(capfd):
    with startup.native_log_filtered():
        os.write(2, ("\n".join(NATIVE + OURS) + "\n").encode())
    err = capfd.readouterr().err
    assert all(line in err for line in OURS) and not any(line in err for line in NATIVE)


def test_labkit_warnings_print_as_one_line():
    with warnings.catch_warnings():
        warnings.formatwarning = startup._format
        text = warnings.formatwarning("No GPU found.", LabkitWarning, "/x/labkit/env.py", 115, "line")
        other = warnings.formatwarning("other", UserWarning, "/x/y.py", 3, "code")
    assert text == "labkit: No GPU found.\n"
    assert "y.py:3" in other                       # everyone else's warnings keep Python's format


def test_the_command_line_starts_without_tensorflows_log():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "labkit", "info", "--profile", "smoke"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert not [line for line in lines if startup.NATIVE_LOG.match(line)], done.stderr
    assert all(line.startswith("labkit: ") for line in lines), done.stderr   # one line each, no source line


def test_tensorflows_retracing_warning_is_not_shown():
    import logging

    import tensorflow as tf

    def record(text):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, text, None, None)

    logger = tf.get_logger()
    assert not logger.filter(record("5 out of the last 13 calls to <function f> triggered tf.function retracing."))
    assert logger.filter(record("Gradients do not exist for variables"))      # other warnings still show


def test_a_process_that_uses_no_framework_can_skip_loading_one():
    """The grading worker only drives a kernel: with LABKIT_PRELOAD=0, importing labkit (and the
    worker) loads no TensorFlow; without it, labkit loads TensorFlow quietly as usual."""
    probe = "import sys, labkit.grading.worker; print('tensorflow' in sys.modules)"
    # as a user starts it: no TF_CPP_MIN_LOG_LEVEL of 0 or 1 (an earlier test may have set one)
    env = {k: v for k, v in os.environ.items() if k not in (startup.PRELOAD_VAR, "TF_CPP_MIN_LOG_LEVEL")}
    skipped = subprocess.run([sys.executable, "-c", probe], env={**env, startup.PRELOAD_VAR: "0"},
                             capture_output=True, text=True, check=True)
    loaded = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert skipped.stdout.split() == ["False"] and loaded.stdout.split() == ["True"]
