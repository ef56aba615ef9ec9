"""Input-pipeline throughput: labkit's tf.data pipeline against a plain PIL-per-image loader.

    python benchmarks/pipeline_throughput.py --image-size 224 --batch 64

Prints images/s for the training split (680 images):
  * PIL loop          open, convert, resize the shorter side, centre-crop, to float, one by one
  * first decode      labkit decoding the JPEGs (parallel, DCT-scaled) and writing its disk cache:
                      what the very first run on a machine pays, once per image size
  * first epoch       a new run (fresh process state) once the disk cache exists: every later run;
                      printed with and without the one-off cost of loading it and building the pipeline
  * cached epochs     steady state, float32 batches in [0, 1] (the students' pipeline)
  * cached, uint8     steady state, uint8 batches (what labkit.train feeds the model)
Runs on a temporary copy of the data directory, so the repository's cache is not touched.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def pil_loop(paths, size: int) -> float:
    import numpy as np
    from PIL import Image

    start = time.perf_counter()
    batch = []
    for path in paths:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            batch.append(np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0)
    return len(paths) / (time.perf_counter() - start)


def epoch(ds) -> float:
    start = time.perf_counter()
    n = sum(int(y.shape[0]) for _, y in ds)
    return n / (time.perf_counter() - start)


def main(argv=None):
    from labkit import data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="cached epochs to average")
    args = p.parse_args(argv)
    size = args.image_size

    source = data.resolve_data_dir(None) / data.ARCHIVE_NAME
    if not source.is_file():
        sys.exit(f"put {data.ARCHIVE_NAME} into {source.parent}/ first (python -m labkit data)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / data.ARCHIVE_NAME).symlink_to(source)
        index = data.oxflower17_index(root)
        paths = index.loc[index["split"] == "train", "path"].tolist()
        print(f"# training split, {len(paths)} images at {size}x{size}, batch {args.batch}, {os.cpu_count()} cores")
        pil = pil_loop(paths, size)
        print(f"PIL loop                 {pil:8.0f} img/s   1.0x")

        start = time.perf_counter()
        data.decoded_images(size, root)  # decodes all 1,360 images and writes the cache
        first_decode = data.NUM_IMAGES / (time.perf_counter() - start)
        print(f"first decode (1,360 img) {first_decode:8.0f} img/s {first_decode / pil:5.1f}x   (once per machine and size)")

        data.decode._decoded.clear()  # as in a new process: only the disk cache is left
        start = time.perf_counter()
        ds = data.oxflower17("train", size, args.batch, data_dir=root)  # load the cache, build the pipeline
        built = time.perf_counter()
        n = sum(int(y.shape[0]) for _, y in ds)
        done = time.perf_counter()
        first, first_pass = n / (done - start), n / (done - built)
        print(f"first epoch, new run     {first:8.0f} img/s {first / pil:5.1f}x   (incl. {built - start:.2f} s to load "
              "the disk cache and build the pipeline)")
        print(f"  of which the pass      {first_pass:8.0f} img/s {first_pass / pil:5.1f}x")

        ds = data.oxflower17("train", size, args.batch, data_dir=root)
        epoch(ds)
        cached = sum(epoch(ds) for _ in range(args.epochs)) / args.epochs
        print(f"cached epochs, float32   {cached:8.0f} img/s {cached / pil:5.1f}x")
        ds8 = data.oxflower17("train", size, args.batch, data_dir=root, dtype="uint8")
        epoch(ds8)
        cached8 = sum(epoch(ds8) for _ in range(args.epochs)) / args.epochs
        print(f"cached epochs, uint8     {cached8:8.0f} img/s {cached8 / pil:5.1f}x")


if __name__ == "__main__":
    main()
