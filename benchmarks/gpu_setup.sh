# Sourced by benchmarks/gpu_check.sh and benchmarks/gpu_recipes.sh on the lent GPU machine (or a
# CPU machine without TensorFlow, to rehearse): installs the carried Keras wheels, points labkit
# at the carried archive, sets the environment, and writes the machine's description to
# $out/gpu.txt. Expects $carry (the carry folder) and $out (the results folder).
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$carry"/whl/*.whl || exit 1
# the archive is read from the carry; what labkit extracts and decodes goes to /tmp, never into
# the carry (a decoded cache there would take the next call over its 64 MiB)
mkdir -p /tmp/labkit-data && ln -sf "$PWD/$carry/data/17flowers.tgz" /tmp/labkit-data/17flowers.tgz
export PYTHONPATH=/tmp/site:$PWD LABKIT_DATA_DIR=/tmp/labkit-data LABKIT_OFFLINE=1 PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false          # JAX takes memory as it needs it (peak memory is then real)
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache     # runs in one call compile the same programs
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -E "^Model name|^CPU\(s\)"; } 2>&1 | tee "$out/gpu.txt"
