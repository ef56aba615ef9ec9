"""The GPU check: labkit's speed, memory and lab results on one GPU, in one go (under 9 minutes).

Made for the lent GPU machine (JAX, PyTorch and CUDA, no TensorFlow): ``benchmarks/gpu_check.sh``
installs the carried Keras wheels and runs it; ``benchmarks/gpu_carry.sh`` prepares what a call
carries. On any machine:

    KERAS_BACKEND=jax python benchmarks/gpu_check.py --out gpu-check       # the real check (a GPU)
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu-check             # CPU, tiny sizes (CI)

A candidate recipe for the ``gpu`` profile, measured before it replaces the profile's: the lab
runs with other ``train()`` settings and builder options, e.g.

    python benchmarks/gpu_check.py --full --skip pipeline speed resnet50 --models resnet18 seresnet18 \
        --recipe optimizer=adamw ema=true epochs=120 --model-option zero_init_residual=false

In order, each step only while the time left allows (``--deadline``), so that the most valuable
figures come first and the check always ends in time:

1. the input pipeline alone: training images/s at 224 px, batch 64 and 256 (uint8 batches, as
   ``train()`` feeds them);
2. the four lab runs in the ``gpu`` profile (AlexNet, VGG-11, GoogLeNet with auxiliary heads,
   ResNet-18), with their run records: epochs, time per epoch and per lab, test accuracy;
3. labkit's ResNet-50 against ``keras.applications.ResNet50`` (no weights), same backend, same
   compile and mixed precision, batch 256;
4. per architecture at 224 px (ResNet-18 first): compile time, training images/s at batch 64 and
   256, peak GPU memory (the training model of the ``gpu`` profile: augmentation, mixed
   precision, jit).

Parts 3 and 4 measure each network in a process of its own, so that its peak memory is its own
(JAX and TensorFlow cannot reset the peak).

Prints one table per part and writes ``gpu_check.json`` (and the runs' ``results.json``) to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from labkit.profiles import PROFILES  # noqa: E402
from labkit.report import LAB_RUNS  # noqa: E402  (the four lab runs: models and builder options)

# the four labs' networks, then lab 09's (not in the default list): the ones the runs may train
NETWORKS = LAB_RUNS + [(m, {}) for m in PROFILES["gpu"].modern_models]


class Clock:
    """Time left before the deadline; every step asks before it starts."""

    def __init__(self, deadline: float):
        self.start, self.deadline = time.perf_counter(), deadline

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.deadline - self.elapsed


def pipeline_throughput(size: int, batch: int, seconds: float = 2.0) -> dict:
    """Images/s of the training batches alone, after the one-off decode (timed apart) and one
    warm-up epoch (the first touches of fresh memory), over whole epochs for at least ``seconds``.
    (The first GPU check timed 3 epochs with no warm-up: 15,739 img/s at batch 256 on the H200's
    host, where the same code gives 27,800 after warm-up on a 2-core Xeon.)"""
    from labkit import data

    started = time.perf_counter()
    data.decoded_images(size)
    decode_s = time.perf_counter() - started
    batches = data.oxflower17("train", size, batch, dtype="uint8", drop_remainder=True)

    def one_epoch() -> int:
        count = sum(len(x) for x, _ in batches)
        if hasattr(batches, "on_epoch_end"):
            batches.on_epoch_end()
        return count

    one_epoch()
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        images += one_epoch()
    elapsed = time.perf_counter() - started
    return {"image_size": size, "batch": batch, "first_decode_s": round(decode_s, 2),
            "images_per_second": round(images / elapsed, 1), "pipeline": type(batches).__name__,
            "gather_threads": data.pipeline.GATHER_THREADS if isinstance(batches, data.ArrayBatches) else None}


def train_speed(model, batch: int, size: int, steps: int, warmup: int = 2) -> dict:
    """Compile time and training images/s of an already compiled model on one in-memory batch."""
    import numpy as np

    from labkit import backend

    rng = np.random.default_rng(0)
    dtype = model.inputs[0].dtype
    x = (rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8) if "uint8" in str(dtype)
         else rng.random((batch, size, size, 3), dtype=np.float32))
    y = rng.integers(0, 17, size=(batch,))
    targets = [y] * len(model.outputs) if len(model.outputs) > 1 else y
    started = time.perf_counter()
    backend.synchronize(model.train_on_batch(x, targets))
    compile_s = time.perf_counter() - started
    for _ in range(warmup - 1):
        model.train_on_batch(x, targets)
    started = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, targets)
    backend.synchronize(loss)
    return {"compile_s": round(compile_s, 1), "images_per_second": round(steps * batch / (time.perf_counter() - started), 1)}


def lab_model_speed(name: str, options: dict, size: int, batch: int, steps: int, profile: str) -> dict:
    """The training model ``train()`` builds for the profile (uint8 in, augmentation, jit)."""
    import keras
    import numpy as np

    from labkit import backend, train

    cfg = train.make_config(name, profile, image_size=size, batch_size=batch, model_options=options)
    policy = train.set_precision(cfg)
    model, _, _, _ = train.build_training_model(cfg, np.full(3, 0.45), np.full(3, 0.05))
    train.compile_model(model, cfg, steps_per_epoch=10)
    result = train_speed(model, batch, size, steps)
    result.update(model=name, batch=batch, precision=policy, jit=bool(model.jit_compile),
                  peak_memory_gb=_gb(backend.peak_memory_bytes()))
    keras.backend.clear_session()
    return result


def bare_resnet50_speed(which: str, size: int, batch: int, steps: int, jit: bool) -> dict:
    """labkit's ResNet-50 or keras.applications' (random weights), compiled alike, in mixed
    precision where the device has it when ``jit`` (the real check), else in float32."""
    import keras

    from labkit import backend, models
    from labkit.env import precision_policy

    policy = precision_policy(jit)
    keras.mixed_precision.set_global_policy(policy)
    if which == "labkit":
        net = models.build("resnet50", num_classes=17, input_shape=(size, size, 3))
    else:
        net = keras.applications.ResNet50(weights=None, classes=17, input_shape=(size, size, 3))
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                jit_compile=backend.jit_compile(jit))
    result = train_speed(net, batch, size, steps)
    result.update(model=f"resnet50 ({which})", batch=batch, precision=policy, jit=bool(net.jit_compile),
                  peak_memory_gb=_gb(backend.peak_memory_bytes()))
    keras.backend.clear_session()
    return result


def measure_apart(job: dict, timeout: float) -> list[dict]:
    """Run one measurement job (``_measure``) in a fresh Python process and return its results:
    the peak memory is then this network's alone. A job that fails or runs out of time returns
    an entry that says so, and the check goes on."""
    import subprocess

    try:
        # without the persistent compilation cache, so that the compile time is a real compile's
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        done = subprocess.run([sys.executable, __file__, "--measure", json.dumps(job)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return [{"model": job["name"], "error": f"did not finish in {timeout:.0f} s"}]
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return [{"model": job["name"], "error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}]
    return json.loads(lines[-1])


def _measure(job: dict) -> list[dict]:
    """One job of ``measure_apart``, in the child process: a lab architecture's training model at
    each batch size (smallest first: the later peak includes the earlier one), or a ResNet-50."""
    if job["kind"] == "lab":
        return [lab_model_speed(job["name"], job["options"], job["size"], batch, job["steps"], job["profile"])
                for batch in job["batches"]]
    return [bare_resnet50_speed(job["name"], job["size"], job["batches"][0], job["steps"], job["jit"])]


def lab_run(name: str, options: dict, profile, out: Path, budget_minutes: float | None, image_size=None,
            recipe: dict | None = None) -> dict:
    """A lab's run in ``profile``: within ``budget_minutes``, or (None) the recipe's full length.
    ``recipe``: ``train()`` settings that replace the profile's (``--recipe optimizer=adamw``)."""
    from labkit import train
    from labkit.profiles import get_profile

    length = ({"budget_minutes": budget_minutes} if budget_minutes is not None
              else {"epochs": get_profile(profile).for_model(name)["epochs"]})
    settings = {"image_size": image_size, **length, **(recipe or {})}
    run = train.train(name, profile=profile, model_options=options, out_dir=out / f"{name}-run", overwrite=True,
                      verbose=2, **settings)
    r = run.results
    epochs = max(r["epochs_run"], 1)
    return {"model": name, "image_size": r["image_size"], "batch": r["batch_size"], "precision": r["precision"],
            "epochs": r["epochs_run"], "recipe_epochs": (r["budget"] or {}).get("recipe_epochs", r["epochs_run"]),
            "train_images_per_second": r["train_images_per_second"],
            "seconds_per_epoch": round(r["training_seconds"] / epochs, 2),
            "lab_seconds": round(r["wall_seconds"], 1), "best_val": r["best_val_accuracy"],
            "test_top1": r["test_top1"], "test_top1_10crop": r["test_top1_10crop"], "record": r}


def _gb(value):
    return None if value is None else round(value / 2**30, 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu-check", help="folder for gpu_check.json")
    p.add_argument("--runs-dir", help="folder for the lab runs' folders (default: OUT/runs)")
    p.add_argument("--deadline", type=float, default=480, help="seconds the whole check may take (default 480)")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: smallest sizes, the smoke profile")
    p.add_argument("--skip", nargs="*", default=[], choices=("pipeline", "runs", "speed", "resnet50"))
    p.add_argument("--models", nargs="+", default=[m for m, _ in LAB_RUNS], choices=[m for m, _ in NETWORKS],
                   help="lab architectures to run and time (default: the four labs'; lab 09's on request)")
    p.add_argument("--full", action="store_true",
                   help="the lab runs train the profile's full recipe (its epochs), not a share of the deadline")
    p.add_argument("--speed-models", nargs="+", choices=[m for m, _ in NETWORKS],
                   help="lab architectures for the speed table (default: those of --models)")
    p.add_argument("--recipe", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="train() settings for the lab runs instead of the profile's, e.g. optimizer=adamw "
                        "ema=true epochs=120 (the names of `python -m labkit train`'s options); repeated, "
                        "the later value of a setting wins")
    p.add_argument("--model-option", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="builder options for every lab run, e.g. zero_init_residual=false")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement job, as JSON
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(json.loads(args.measure)), default=str), flush=True)
        return 0
    from labkit.__main__ import _parse_option
    from labkit.train.config import cli_fields

    recipe = dict(_parse_option(o) for o in args.recipe)
    builder_options = dict(_parse_option(o) for o in args.model_option)
    allowed = {f.name for f in cli_fields()} - {"model", "profile", "model_options"}  # those have flags of their own
    unknown = sorted(set(recipe) - allowed)
    if unknown:
        p.error(f"--recipe: unknown setting(s) {', '.join(unknown)}; use the names of `python -m labkit train`'s "
                "options with underscores (learning_rate=0.001)")
    clock = Clock(args.deadline)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out / "runs"

    import pandas as pd

    from labkit import backend, models
    from labkit.env import device_report

    tiny = args.tiny
    labs = [(m, {**o, **builder_options}) for m, o in NETWORKS if m in args.models]
    size, batches, steps = (None, (4, 8), 2) if tiny else (224, (64, 256), 20)
    profile = "smoke" if tiny else "gpu"
    report = {"device": device_report()["device"], "backend": backend.name(), "versions": backend.versions(),
              "tiny": tiny, "full_runs": args.full, "recipe": recipe, "model_options": builder_options,
              "pipeline": None, "runs": [], "speed": [], "resnet50": [], "skipped": []}
    print(f"gpu check: {report['device']}, backend {report['backend']}, {report['versions']}", flush=True)

    def step(part: str, seconds_needed: float):
        """Whether to run the next step of ``part`` (pipeline, runs, speed, resnet50)."""
        if part in args.skip:
            return False
        if clock.left() < seconds_needed:
            report["skipped"].append(f"a step of {part} (needs about {seconds_needed:.0f} s, {clock.left():.0f} s left)")
            print(f"skipped a step of {part}: not enough time left", flush=True)
            return False
        return True

    if step("pipeline", 20):
        report["pipeline"] = [pipeline_throughput(32 if tiny else 224, batch, seconds=0.2 if tiny else 2.0)
                              for batch in batches]
        print(pd.DataFrame(report["pipeline"]).to_string(index=False), flush=True)

    # the lab runs share 55% of the time left, each run a time budget of its share (train() then
    # chooses its epochs to fit, up to the profile's 15 minutes); the speed tables get the rest
    runs_end = clock.elapsed + clock.left() * (0.9 if tiny else 0.55)
    for i, (name, options) in enumerate(labs):
        budget = None if args.full else min(15.0, max((runs_end - clock.elapsed) / (len(labs) - i), 30) / 60)
        if step("runs", 30):
            small = max(32, models.min_input_size(name)) if tiny else None
            report["runs"].append(lab_run(name, options, profile, runs_dir, budget, image_size=small, recipe=recipe))
            _save(report, out)
    if report["runs"]:
        print(pd.DataFrame(report["runs"]).drop(columns="record").to_string(index=False), flush=True)

    for which in ("labkit", "keras.applications"):
        if step("resnet50", 40):
            job = {"kind": "resnet50", "name": which, "size": 32 if tiny else size, "batches": [batches[-1]],
                   "steps": steps, "jit": not tiny}
            report["resnet50"].extend(measure_apart(job, timeout=max(clock.left(), 30)))
            _save(report, out)
    if report["resnet50"]:
        print(pd.DataFrame(report["resnet50"]).to_string(index=False), flush=True)
    rates = [r.get("images_per_second") for r in report["resnet50"]]
    if len(rates) == 2 and all(rates):
        report["resnet50_ratio"] = round(rates[0] / rates[1], 3)
        print(f"labkit / keras.applications ResNet-50: {report['resnet50_ratio']:.2f}x", flush=True)
        _save(report, out)
    # each network in a process of its own (its own peak memory): the ResNet-50 pair first (the
    # issue's speed targets), then the lab architectures at both batch sizes, ResNet-18 first
    timed = [(m, o) for m, o in NETWORKS if m in (args.speed_models or args.models)]
    for name, options in sorted(timed, key=lambda lab: lab[0] != "resnet18"):
        if step("speed", 25 * len(batches)):
            small = max(32, models.min_input_size(name)) if tiny else size
            job = {"kind": "lab", "name": name, "options": options, "size": small, "batches": list(batches),
                   "steps": steps, "profile": profile}
            report["speed"].extend(measure_apart(job, timeout=max(clock.left(), 30)))
            _save(report, out)
    if report["speed"]:
        print(pd.DataFrame(report["speed"]).to_string(index=False), flush=True)

    report["seconds"] = round(clock.elapsed, 1)
    _save(report, out)
    print(f"gpu check finished in {clock.elapsed:.0f} s; {out / 'gpu_check.json'}"
          + (f"; skipped: {'; '.join(report['skipped'])}" if report["skipped"] else ""), flush=True)
    return 0


def _save(report: dict, out: Path) -> None:
    from labkit.train.records import write_json_atomically

    write_json_atomically(out / "gpu_check.json", report, default=str)


if __name__ == "__main__":
    sys.exit(main())
