"""Training throughput with the augmentation inside the model: labkit's layers against Keras'.

    python benchmarks/augmentation_throughput.py --model resnet18 --image-size 128 --batch 32
    KERAS_BACKEND=jax python benchmarks/augmentation_throughput.py

Builds labkit's training model (uint8 input, rescale, augmentation, normalisation, network) three
ways: no augmentation; labkit's ``standard`` pipeline (Keras flip, contrast, brightness and
labkit's ``RandomAffine``, which rotates, zooms and shifts in one resampling and compiles); and
the same strengths with Keras' ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation``
(three resamplings, no XLA). Times training steps on one in-memory batch, alternating the
variants ``--repeats`` times, best run of each. Prints img/s and the cost of augmentation.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def keras_geometric_pipeline(seed=0):
    """The pipeline labkit used before: Keras' own geometric layers (supports_jit=False)."""
    import keras

    from labkit.augment import STRENGTHS

    s, L, f32 = STRENGTHS["standard"], keras.layers, dict(seed=seed, dtype="float32")
    return keras.Sequential([
        L.RandomFlip("horizontal", **f32),
        L.RandomRotation(s["rotation"], fill_mode="reflect", **f32),
        L.RandomZoom(-s["zoom"], fill_mode="reflect", **f32),
        L.RandomTranslation(s["translation"], s["translation"], fill_mode="reflect", **f32),
        L.RandomContrast(s["contrast"], value_range=(0, 1), **f32),
        L.RandomBrightness(s["brightness"], value_range=(0, 1), **f32),
    ])


def build(variant: str, model: str, size: int, jit: bool):
    import keras
    import numpy as np

    from labkit import augment, backend, models

    net = models.build(model, num_classes=17, input_shape=(size, size, 3))
    raw = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(raw)
    pipeline = {"none": None, "labkit": augment.keras_augmentation("standard", seed=0),
                "keras": keras_geometric_pipeline()}[variant]
    if pipeline is not None:
        x = pipeline(x)
    m = keras.Model(raw, net(keras.layers.Normalization(mean=np.full(3, .45), variance=np.full(3, .05))(x)))
    m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
              jit_compile=backend.jit_compile(jit))
    return m


def main(argv=None):
    import numpy as np

    from labkit import backend

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jit", action="store_true", help="compile the step (XLA; JAX always jits)")
    p.add_argument("--variants", nargs="+", default=["none", "labkit", "keras"], choices=("none", "labkit", "keras"))
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch, args.image_size, args.image_size, 3), dtype=np.uint8)
    y = rng.integers(0, 17, size=(args.batch,))
    built = {v: build(v, args.model, args.image_size, args.jit) for v in args.variants}
    runs = {v: [] for v in args.variants}
    for v, m in built.items():
        for _ in range(args.warmup):
            m.train_on_batch(x, y)
    for _ in range(args.repeats):
        for v, m in built.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = m.train_on_batch(x, y)
            float(np.asarray(loss[0] if isinstance(loss, list) else loss))
            runs[v].append(args.steps * args.batch / (time.perf_counter() - start))
    print(f"backend {backend.name()}, {args.model} at {args.image_size} px, batch {args.batch}, "
          f"jit {backend.jit_compile(args.jit)}, best of {args.repeats}")
    base = max(runs["none"]) if "none" in runs else None
    for v in args.variants:
        compiled = built[v].jit_compile
        line = f"  {v:7s} {max(runs[v]):8.1f} img/s (median {np.median(runs[v]):.1f}; step compiled: {compiled})"
        if base and v != "none":
            line += f", augmentation costs {1 - max(runs[v]) / base:.0%} of the step"
        print(line)


if __name__ == "__main__":
    main()
