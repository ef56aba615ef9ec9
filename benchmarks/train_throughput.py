"""Training throughput (images/s) of labkit's architectures, and an A/B against keras.applications.

    python benchmarks/train_throughput.py --models alexnet vgg16 googlenet resnet18 --image-size 112 --batch 32
    python benchmarks/train_throughput.py --ab --image-size 112 --batch 16     # labkit / keras ratio
    python benchmarks/train_throughput.py --models resnet18 --image-size 128 --precision float32 mixed_bfloat16

Synthetic batches held in memory (the input pipeline is measured by pipeline_throughput.py), SGD
with momentum, the current precision policy; a few warm-up steps (tracing, autotuning) are not
timed. Prints one line per model. Figures vary with machine load: compare within one run. The
A/B alternates the two models --repeats times and reports the fastest run of each (load only
slows a run down), with the medians and every run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def throughput(model, image_size: int, batch: int, steps: int, warmup: int, jit: bool) -> float:
    """Training images/s on one in-memory batch, on any Keras backend (JAX always jits)."""
    import keras
    import numpy as np

    from labkit import backend

    rng = np.random.default_rng(0)
    x = rng.random((batch, image_size, image_size, 3), dtype=np.float32)
    y = rng.integers(0, 17, size=(batch,))
    n_out = len(model.outputs)
    targets = [y] * n_out if n_out > 1 else y
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=["sparse_categorical_crossentropy"] * n_out if n_out > 1 else "sparse_categorical_crossentropy",
                  jit_compile=backend.jit_compile(jit))
    for _ in range(warmup):
        model.train_on_batch(x, targets)
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, targets)
    float(np.asarray(loss[0] if isinstance(loss, list) else loss))  # wait for asynchronous backends
    return steps * batch / (time.perf_counter() - start)


def main(argv=None):
    import keras

    from labkit import models

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["alexnet", "vgg16", "googlenet", "resnet18", "resnet50"])
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    p.add_argument("--ab", nargs="*", choices=("vgg16", "resnet50"),
                   help="A/B: labkit vs keras.applications (VGG16 and ResNet50, or the ones named)")
    p.add_argument("--repeats", type=int, default=3, help="alternating measurements per model (A/B, precisions)")
    p.add_argument("--precision", nargs="+", default=["float32"],
                   choices=("float32", "mixed_bfloat16", "mixed_float16"),
                   help="Keras dtype policies to compare (alternated, best of --repeats; the first is the baseline)")
    args = p.parse_args(argv)
    size, batch = args.image_size, args.batch
    keras.mixed_precision.set_global_policy(args.precision[0])
    print(f"# training images/s, {size}x{size}x3, batch {batch}, 17 classes, policy "
          f"{', '.join(args.precision)}, jit={args.jit}")
    if args.ab is not None:
        pairs = [
            ("vgg16", lambda: models.build("vgg16", 17, (size, size, 3)),
             lambda: keras.applications.VGG16(weights=None, input_shape=(size, size, 3), classes=17)),
            ("resnet50", lambda: models.build("resnet50", 17, (size, size, 3)),
             lambda: keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=17)),
        ]
        for name, ours, theirs in pairs:
            if args.ab and name not in args.ab:
                continue
            runs = {"labkit": [], "keras": []}
            for _ in range(args.repeats):  # alternate A and B, so that drifting load hits both
                for label, build in (("labkit", ours), ("keras", theirs)):
                    runs[label].append(throughput(build(), size, batch, args.steps, args.warmup, args.jit))
                    keras.backend.clear_session()
            # load only ever slows a run down, so the fastest of N is the estimate (as timeit does)
            a, b = max(runs["labkit"]), max(runs["keras"])
            ma, mb = (sorted(runs[k])[len(runs[k]) // 2] for k in ("labkit", "keras"))
            print(f"{name:10s} labkit {a:8.1f} img/s   keras.applications {b:8.1f} img/s   ratio {a / b:5.2f}"
                  f"   (best of {args.repeats}; medians {ma:.1f} / {mb:.1f} = {ma / mb:.2f}; all runs: labkit "
                  f"{', '.join(f'{v:.1f}' for v in runs['labkit'])}; keras {', '.join(f'{v:.1f}' for v in runs['keras'])})")
        return
    for name in args.models:
        side = max(size, models.min_input_size(name))
        if len(args.precision) == 1:
            ips = throughput(models.build(name, 17, (side, side, 3)), side, batch, args.steps, args.warmup, args.jit)
            print(f"{name:10s} {ips:8.1f} img/s   ({680 / ips:6.1f} s per OxFlower17 training epoch)")
            keras.backend.clear_session()
            continue
        runs = {policy: [] for policy in args.precision}
        for _ in range(args.repeats):
            for policy in args.precision:
                keras.mixed_precision.set_global_policy(policy)
                runs[policy].append(throughput(models.build(name, 17, (side, side, 3)), side, batch,
                                               args.steps, args.warmup, args.jit))
                keras.backend.clear_session()
        base = max(runs[args.precision[0]])
        for policy, values in runs.items():
            print(f"{name:10s} {policy:15s} {max(values):8.1f} img/s   x{max(values) / base:4.2f}   "
                  f"(best of {args.repeats}; all runs {', '.join(f'{v:.1f}' for v in values)})")
        keras.mixed_precision.set_global_policy(args.precision[0])


if __name__ == "__main__":
    main()
