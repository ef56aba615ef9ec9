#!/usr/bin/env bash
# What a call to the lent GPU machine must carry for benchmarks/gpu_check.sh (that machine has
# Python 3.12, JAX, PyTorch, CUDA, pandas, matplotlib, scipy and Pillow, but no TensorFlow, no Keras
# and no network). From the project root, with the project's venv active:
#     bash benchmarks/gpu_carry.sh            # writes .carry/ (about 41 MB), ignored by git
# Then call the device tool with carry [".carry"] and the command
#     bash benchmarks/gpu_check.sh .carry
# .carry/whl: Keras (this venv's version), namex and optree wheels for CPython 3.12 (about 3 MB);
# .carry/data/17flowers.tgz: the archive with its JPEGs downscaled to a 256-px shorter side (the
# labs' 224-px inputs lose nothing; the full 60 MB archive would not fit beside the tree).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.carry
prepare=../shared/device/prepare-carry.sh
[ -f "$prepare" ] || { echo "$prepare is missing: it comes with ../shared" >&2; exit 1; }
rm -rf "$dest"
bash "$prepare" "$dest" 256
grep -qxF "/$dest/" .git/info/exclude 2>/dev/null || echo "/$dest/" >> .git/info/exclude
tree=$(git ls-files -co --exclude-standard | xargs du -cb 2>/dev/null | tail -n 1 | cut -f1)
carry=$(du -sb "$dest" | cut -f1)
total=$(( (tree + carry) / 1048576 ))
echo "working tree $(( tree / 1048576 )) MiB + carry $(( carry / 1048576 )) MiB = $total MiB (a call carries at most 64 MiB)"
[ "$total" -lt 64 ] || { echo "too large for one call" >&2; exit 1; }
