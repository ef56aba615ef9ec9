"""What the time budget's speed probe costs a run: the same run with and without a budget.

    python benchmarks/budget_probe.py --model resnet18 --profile gpu --image-size 64 --epochs 2
    KERAS_BACKEND=jax python benchmarks/budget_probe.py ...

Trains ``--model`` twice, each in a fresh process (no compiled step is shared between them):

* ``epochs``: ``--epochs`` given, so no budget and no probe;
* ``budget``: the profile's recipe shortened to ``--epochs`` with a budget of ``--minutes``, far
  more than the run needs, so the probe measures this machine and keeps every epoch.

Both runs then train the same epochs; what the budgeted one takes longer is the probe: its timed
steps and, unless the probe runs the step that the run then reuses, a second compile. Prints each
run's whole time, its first and second epoch's training time (the first includes compiling the
step, unless the probe compiled it already), and the difference. Each run writes into a temporary
folder, so nothing in the checkout is touched.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import dataclasses, json, sys
from labkit.profiles import get_profile
from labkit.train import train
settings = json.loads(sys.argv[1])
profile = get_profile(settings.pop("profile"))
minutes = settings.pop("minutes")
if minutes:   # the recipe's length is --epochs; the budget may keep it
    profile = dataclasses.replace(profile, epochs=settings.pop("epochs"), budget_minutes=minutes)
run = train(settings.pop("model"), profile=profile, verbose=0, **settings)
print("RESULT", json.dumps({"wall": run.results["wall_seconds"], "epochs": run.results["epochs_run"],
                            "budget": run.results.get("budget"),
                            "train_seconds": run.history["train_seconds"].tolist()}))
"""


def run_once(settings: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"the {'budgeted' if settings['minutes'] else 'plain'} run failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--minutes", type=float, default=600.0, help="the budget: far more than the run needs")
    args = p.parse_args(argv)
    import keras

    print(f"backend {keras.backend.backend()}, {args.model}, {args.profile} profile, {args.image_size} px, "
          f"{args.epochs} epochs")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, minutes in (("epochs", 0), ("budget", args.minutes)):
            settings = dict(model=args.model, profile=args.profile, image_size=args.image_size,
                            batch_size=args.batch_size, epochs=args.epochs, minutes=minutes,
                            out_dir=str(Path(tmp) / name))
            rows[name] = row = run_once(settings)
            first, *rest = row["train_seconds"]
            kept = (f", budget kept {row['budget']['epochs']} of {row['budget']['recipe_epochs']} epochs"
                    if row["budget"] else "")
            print(f"  {name:7s} whole run {row['wall']:7.1f} s   first epoch {first:6.1f} s   "
                  f"next {rest[0] if rest else float('nan'):6.1f} s{kept}", flush=True)
    print(f"  the probe costs {rows['budget']['wall'] - rows['epochs']['wall']:+.1f} s of the whole run")


if __name__ == "__main__":
    main()
