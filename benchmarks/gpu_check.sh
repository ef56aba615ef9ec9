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
source "$(dirname "$0")/gpu_setup.sh"
KERAS_BACKEND=jax timeout 550 python3 benchmarks/gpu_check.py --out "$out" --runs-dir /tmp/gpu-runs --deadline 500 "$@" 2>&1 | tee "$out/jax.log"
KERAS_BACKEND=torch timeout 40 python3 -m labkit train --model resnet18 --profile smoke --out /tmp/torch-smoke \
    2>&1 | tail -n 5 | tee "$out/torch.log"
