"""What depends on the Keras backend (TensorFlow, JAX or PyTorch), in one place.

labkit's models, augmentation and training are written with ``keras`` and ``keras.ops`` and run
on every backend. The few things that differ, which devices exist, deterministic kernels,
several GPUs, GPU memory, out-of-memory errors, are answered here, so that no other module
imports a backend. TensorFlow is optional: without it labkit feeds batches from NumPy and
decodes JPEGs with Pillow (``labkit.data``).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings

import keras

from labkit.startup import LabkitWarning

BACKENDS = ("tensorflow", "jax", "torch")


def name() -> str:
    """The Keras backend in use: ``tensorflow``, ``jax`` or ``torch`` (``$KERAS_BACKEND``)."""
    return keras.backend.backend()


@functools.cache
def has_tensorflow() -> bool:
    """Whether TensorFlow can be imported (tf.data, TFDS): on Colab yes; on a JAX-only machine no."""
    return importlib.util.find_spec("tensorflow") is not None


def _tf_gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def _jax_gpus():
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU platform
        return []


def gpus() -> list[dict]:
    """The GPUs the active backend can use: ``[{"name": ..., "compute_capability": (9, 0)}]``."""
    backend = name()
    found = []
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in _tf_gpus():
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except Exception:  # details are optional; the device itself is what matters
                details = {}
            found.append({"name": details.get("device_name", gpu.name),
                          "compute_capability": details.get("compute_capability")})
    elif backend == "jax":
        for gpu in _jax_gpus():
            cc = getattr(gpu, "compute_capability", None)
            found.append({"name": getattr(gpu, "device_kind", str(gpu)),
                          "compute_capability": tuple(int(p) for p in str(cc).split(".")) if cc else None})
    elif backend == "torch":
        import torch

        for i in range(torch.cuda.device_count()):
            found.append({"name": torch.cuda.get_device_name(i),
                          "compute_capability": tuple(torch.cuda.get_device_capability(i))})
    return found


def gpu_count() -> int:
    return len(gpus())


def has_bfloat16_gpu(devices: list[dict] | None = None) -> bool:
    """Every GPU computes bfloat16 on its tensor cores (compute capability 8.0, Ampere, or newer:
    A100, L4, H100; not a T4 or V100)."""
    devices = gpus() if devices is None else devices
    return bool(devices) and all((d.get("compute_capability") or (0, 0)) >= (8, 0) for d in devices)


def jit_compile(requested: bool) -> bool:
    """Whether to compile the training step. On JAX always: Keras' JAX trainer runs the step
    op by op (many times slower) unless it is jitted, and XLA is JAX's only compiler. On
    TensorFlow (XLA) and PyTorch (``torch.compile``), as requested: on a CPU, TensorFlow
    without XLA can be faster (it depends on the CPU: measure it)."""
    return True if name() == "jax" else bool(requested)


def setup_gpu_memory() -> None:
    """TensorFlow takes all GPU memory at start unless told to grow: then a second notebook on the
    same GPU dies out of memory. Memory growth lets each take what it needs. JAX takes 75% of the
    GPU at its first use unless ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is set before it starts;
    PyTorch grows on its own."""
    if name() == "tensorflow" and has_tensorflow():
        import tensorflow as tf

        for gpu in _tf_gpus():
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # the GPU was already initialised: too late, and harmless
                pass


def enable_determinism() -> None:
    """Bit-for-bit repeatable kernels (slower), or a clear error where the backend has none."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "jax":
        flag = "--xla_gpu_deterministic_ops=true"
        if gpu_count() and flag not in os.environ.get("XLA_FLAGS", ""):
            raise RuntimeError(f"JAX chooses its GPU kernels when it starts: set XLA_FLAGS={flag} in the "
                               "environment before starting Python, then run again.")
        # on the CPU, XLA's kernels are deterministic already
    elif backend == "torch":
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    else:
        raise RuntimeError(f"labkit does not know how to make the {backend!r} backend deterministic.")


def distribution_scope(devices: int | None = None):
    """Data parallelism over all GPUs when there are several (each GPU gets a slice of every
    batch, gradients are averaged: AlexNet's two-GPU story done the modern way):
    ``tf.distribute.MirroredStrategy`` on TensorFlow, ``keras.distribution.DataParallel`` on JAX.
    Build and compile the model inside the returned context."""
    count = gpu_count() if devices is None else devices
    backend = name()
    if count > 1 and backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    if count > 1 and backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    elif count > 1:
        warnings.warn(f"{count} GPUs found, but labkit trains on one with the {backend} backend; "
                      "use KERAS_BACKEND=jax or tensorflow for several.", LabkitWarning, stacklevel=2)
    return contextlib.nullcontext()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the accelerator running out of memory, by its type or status code."""
    backend = name()
    if backend == "tensorflow" and has_tensorflow():
        import tensorflow as tf

        return isinstance(error, tf.errors.ResourceExhaustedError)
    if backend == "torch":
        import torch

        return isinstance(error, torch.OutOfMemoryError)
    if backend == "jax":  # XlaRuntimeError carries the status code RESOURCE_EXHAUSTED
        return type(error).__name__ == "XlaRuntimeError" and str(error).startswith("RESOURCE_EXHAUSTED")
    return False


def peak_memory_bytes() -> int | None:
    """The most accelerator memory the backend has held so far in this process (first GPU), or
    None on a CPU. JAX and TensorFlow cannot reset it: measure the largest model last."""
    backend = name()
    if not gpu_count():
        return None
    if backend == "jax":
        stats = _jax_gpus()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use")
    if backend == "torch":
        import torch

        return int(torch.cuda.max_memory_allocated())
    if backend == "tensorflow":
        import tensorflow as tf

        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return None


def synchronize(value) -> None:
    """Wait until ``value`` (a loss, an output) is computed: JAX and PyTorch run asynchronously,
    so a timer must wait for the result before it stops."""
    import numpy as np

    np.asarray(keras.ops.convert_to_numpy(value[0] if isinstance(value, (list, tuple)) else value))


def versions() -> dict:
    """Versions of Keras and the backend libraries that are installed."""
    from importlib import metadata

    found = {"keras": keras.__version__}
    for package in ("tensorflow", "jax", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def loss_gradients(model, loss_fn, inputs, targets) -> list:
    """The gradient of ``loss_fn(targets, model(inputs, training=True))`` with respect to each of
    ``model.trainable_variables``, as NumPy arrays, on whichever backend Keras runs. Variables are
    left as they were (batch norm's moving statistics included)."""
    import numpy as np

    variables = model.trainable_variables
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(inputs, training=True))
        grads = tape.gradient(loss, [v.value for v in variables])
    elif backend == "jax":
        import jax

        frozen = [v.value for v in model.non_trainable_variables]

        def compute(values):
            predictions, _ = model.stateless_call(values, frozen, inputs, training=True)
            return loss_fn(targets, predictions)

        grads = jax.grad(compute)([v.value for v in variables])
    elif backend == "torch":
        import torch

        tensors = [v.value for v in variables]
        with torch.enable_grad():
            loss = loss_fn(targets, model(inputs, training=True))
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    else:
        raise NotImplementedError(f"gradients on the {backend} backend")
    for variable, value in zip(model.non_trainable_variables, saved):
        variable.assign(value)
    return [np.zeros(tuple(v.shape), "float32") if g is None else keras.ops.convert_to_numpy(g)
            for v, g in zip(variables, grads)]


def input_gradient(fn, inputs):
    """``(value, gradient)``: ``fn(inputs)`` summed to a float32 scalar (also for a network that
    computes in bfloat16), and its gradient with respect to ``inputs`` (the images, not the
    weights), as NumPy arrays, on whichever backend Keras runs.
    ``fn`` maps a tensor to a tensor with ``keras.ops``/Keras models (inference mode)."""
    import numpy as np

    x = np.asarray(inputs, dtype="float32")
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = tf.cast(tf.reduce_sum(fn(tensor)), tf.float32)  # a bfloat16 network's too
        grad = tape.gradient(value, tensor)
    elif backend == "jax":
        import jax

        value, grad = jax.value_and_grad(lambda t: keras.ops.cast(keras.ops.sum(fn(t)), "float32"))(jax.numpy.asarray(x))
    elif backend == "torch":
        import torch

        tensor = torch.tensor(x, device=keras.ops.convert_to_tensor(0.0).device, requires_grad=True)
        with torch.enable_grad():
            value = fn(tensor).sum().float()
            (grad,) = torch.autograd.grad(value, tensor)
    else:
        raise NotImplementedError(f"gradients on the {backend} backend")
    return float(keras.ops.convert_to_numpy(value)), keras.ops.convert_to_numpy(grad)
