#!/usr/bin/env bash
# The GPU check on the lent GPU machine, in one call (see benchmarks/gpu_carry.sh for the carry):
#     bash benchmarks/gpu_check.sh .carry          # under 10 minutes; results under $OUT
# Arguments after the carry folder go to gpu_check.py: rehearse on a CPU machine without
# TensorFlow (Python 3.12 with JAX, as there) with `bash benchmarks/gpu_check.sh .carry --tiny`.
# JAX does the check (labkit's backend for a machine without TensorFlow); PyTorch then trains one
# smoke run, so that the third backend is covered too. $OUT gets gpu.txt, gpu_check.json (with
# the four run records) and the logs; the run folders (models of up to 500 MB) stay in /tmp.
set -uo pipefail
carry=${1:-.carry}
shift || true
out=${OUT:-gpu-check-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$carry"/whl/*.whl || exit 1
# the archive is read from the carry; what labkit extracts and decodes goes to /tmp, never into
# the carry (a decoded cache there would take the next call over its 64 MiB)
mkdir -p /tmp/labkit-data && ln -sf "$PWD/$carry/data/17flowers.tgz" /tmp/labkit-data/17flowers.tgz
export PYTHONPATH=/tmp/site:$PWD LABKIT_DATA_DIR=/tmp/labkit-data LABKIT_OFFLINE=1 PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false          # JAX takes memory as it needs it (peak memory is then real)
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache     # the budget probe and the run compile the same programs
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -E "^Model name|^CPU\(s\)"; } 2>&1 | tee "$out/gpu.txt"
KERAS_BACKEND=jax timeout 550 python3 benchmarks/gpu_check.py --out "$out" --runs-dir /tmp/gpu-runs --deadline 500 "$@" 2>&1 | tee "$out/jax.log"
KERAS_BACKEND=torch timeout 40 python3 -m labkit train --model resnet18 --profile smoke --out /tmp/torch-smoke \
    2>&1 | tail -n 5 | tee "$out/torch.log"
