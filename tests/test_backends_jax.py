"""The backend-neutral subset of the suite (``test_backends.JAX_SUBSET``) under JAX."""
import pytest

from test_backends import JAX_SUBSET, _run_subset

pytestmark = pytest.mark.slow


def test_backend_neutral_subset_passes_under_jax(tmp_path, real_data_dir):
    pytest.importorskip("jax")
    # compiled programs are shared between tests through a cache
    _run_subset(JAX_SUBSET, tmp_path, real_data_dir, KERAS_BACKEND="jax",
                JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
