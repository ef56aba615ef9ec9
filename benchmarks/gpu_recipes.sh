#!/usr/bin/env bash
# Candidate recipes for the `gpu` profile, measured on the lent GPU machine in one call (carry as
# for benchmarks/gpu_check.sh):
#     bash benchmarks/gpu_recipes.sh .carry            # about 9 minutes; results under $OUT/<variant>/
#     bash benchmarks/gpu_recipes.sh .carry --tiny --recipe epochs=1   # rehearsal: a CPU machine without TensorFlow
# Each variant is one `gpu_check.py --full` call that trains the named networks with the given
# train() settings (--recipe) and builder options (--model-option), most informative first; a
# variant starts only while the call's time (LIMIT seconds, default 540) leaves it at least 60 s,
# and is stopped at the limit. Arguments after the carry folder go to every variant (a later
# --recipe setting replaces a variant's).
set -uo pipefail
carry=${1:-.carry}
shift || true
out=${OUT:-gpu-recipes-out}
source "$(dirname "$0")/gpu_setup.sh"
runs="--full --skip pipeline speed resnet50"
adamw="--recipe optimizer=adamw ema=true"      # the cpu profile's ResNet-18 recipe (README, Results)
keras_start="--model-option kernel_initializer=glorot_uniform zero_init_residual=false"  # lab 05's network's start
final_fit="--recipe train_split=trainval"        # train + val, the final weights tested (README, Results)
cutmix="--recipe mixing=cutmix"                 # with the two above, 150 epochs on a CPU: 91.2% test top-1 at 128 px, 90.0% at 224 (gpu profile)
variants=(
  "r18-adamw-60            $runs --models resnet18 $adamw"
  "r18-tv-150-keras-cutmix $runs --models resnet18 $adamw epochs=150 $cutmix $final_fit $keras_start"
  "r18-tv-300-keras-cutmix $runs --models resnet18 $adamw epochs=300 $cutmix $final_fit $keras_start"
  "r18-tv-150-keras        $runs --models resnet18 $adamw epochs=150 $final_fit $keras_start"
  "r18-se18-150-keras      $runs --models resnet18 seresnet18 $adamw epochs=150 $keras_start"
  "r18-adamw-150           $runs --models resnet18 $adamw epochs=150"
  "speed-vgg-googlenet     --skip pipeline runs resnet50 --speed-models vgg11 googlenet"
)
end=$(( SECONDS + ${LIMIT:-540} ))
for variant in "${variants[@]}"; do
  read -r name args <<< "$variant"
  left=$(( end - SECONDS ))
  if [ "$left" -lt 60 ]; then echo "skipped $name: ${left} s left" | tee -a "$out/skipped.txt"; continue; fi
  echo "== $name ($left s left): $args"
  # shellcheck disable=SC2086
  KERAS_BACKEND=jax timeout "$left" python3 benchmarks/gpu_check.py --out "$out/$name" --runs-dir "/tmp/gpu-runs/$name" \
      --deadline "$(( left - 10 ))" $args "$@" 2>&1 | tee "$out/$name.log" | grep -v -E "^([0-9]+/[0-9]+ |Epoch [0-9]+/)"
done
