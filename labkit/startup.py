"""What ``import labkit`` does before any framework loads, so that students read labkit's lines
and not TensorFlow's:

* TensorFlow's native start-up log (the absl ``I0000 ... port.cc] oneDNN custom operations``
  lines, CUDA probing on a machine without a GPU) is written to the process's file descriptor 2
  before ``TF_CPP_MIN_LOG_LEVEL`` applies, so setting it is not enough. labkit loads TensorFlow
  and lists its devices once, with descriptor 2 sent to a file, then passes on every line that
  is not such a log line. Set ``TF_CPP_MIN_LOG_LEVEL`` yourself (0 or 1) to see them all.
* TensorFlow's retracing warning, which reading back many runs triggers, is not shown.
* labkit's own warnings (``LabkitWarning``) print as one line, ``labkit: ...``, without the
  Python source line that Python's default format adds.

A process that uses no framework (the grading worker, which only drives a kernel) sets
``LABKIT_PRELOAD=0`` to skip loading TensorFlow, about 5 s.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings

#: a line of TensorFlow's native log (absl / glog format), or absl's notice that precedes them
NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                        r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\]"
                        r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\])")


#: set to 0 in a process that will not use a framework: ``import labkit`` then loads none
PRELOAD_VAR = "LABKIT_PRELOAD"


class LabkitWarning(UserWarning):
    """A warning from labkit: printed as one line, ``labkit: <message>``."""


def _format(message, category, filename, lineno, line=None, _default=warnings.formatwarning):
    if issubclass(category, LabkitWarning):
        return f"labkit: {message}\n"
    return _default(message, category, filename, lineno, line)


@contextlib.contextmanager
def native_log_filtered():
    """Send file descriptor 2 to a temporary file inside the block, then write back to it every
    line that is not ``NATIVE_LOG``. Python's ``sys.stderr`` (a notebook's) is left alone."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):   # no descriptor 2 to filter (an embedded interpreter)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines()
                    if line.strip() and not NATIVE_LOG.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def quiet_start() -> None:
    """Load TensorFlow (when installed) and probe its devices with the native log filtered,
    unless ``TF_CPP_MIN_LOG_LEVEL`` was set to 0 or 1 by the user or ``LABKIT_PRELOAD`` to 0;
    format labkit's warnings."""
    warnings.formatwarning = _format
    asked = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib.util

    if (asked not in ("0", "1") and "tensorflow" not in sys.modules and os.environ.get(PRELOAD_VAR) != "0"
            and importlib.util.find_spec("tensorflow") is not None):
        with native_log_filtered():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
    if "tensorflow" in sys.modules:   # loaded here, or before labkit was imported
        logger = sys.modules["tensorflow"].get_logger()
        if _not_retracing not in logger.filters:
            logger.addFilter(_not_retracing)


def _not_retracing(record) -> bool:
    """TensorFlow warns when ``model.predict`` of a new model traces its step again, as labs that
    read back many runs do ("5 out of the last 13 calls ... triggered tf.function retracing"):
    about Keras' internals, not the student's code, so it is not shown."""
    return "triggered tf.function retracing" not in record.getMessage()
