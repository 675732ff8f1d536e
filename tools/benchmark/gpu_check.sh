#!/usr/bin/env bash
# The prepared GPU check of issue 13, for one GPU, in under 8 minutes:
#   1. AMP: training steps under mmengine's AmpOptimWrapper, float16 with a
#      dynamic loss scale and bfloat16, CLCR and late fusion;
#   2. torch.compile of train_step (as `compile` in a config does), with
#      TorchDynamo's graph breaks of the loss-mode forward;
#   3. a one-GPU NCCL DDP step through torchrun (DDP defaults:
#      find_unused_parameters=False), CLCR and late fusion;
#   4. CLCR vs late-fusion training-step time and peak CUDA memory at the
#      paper's setting: ResNet-18 encoders (configs/clcr_kinetics_sounds.py:
#      3 RGB frames at 224x224, 10 s log-mel of 1001x128), batch 64.
# Writes one JSON (default work_dirs/gpu_check/gpu_check.json). A part that
# fails or times out is recorded with its log tail; the others still run.
#
#   bash tools/benchmark/gpu_check.sh [--out FILE]
#   bash tools/benchmark/gpu_check.sh --device cpu --dry-run   # tiny sizes
# --config FILE and --shape NAME=D1,D2,... (repeatable) replace the model
# and the per-sample input shapes (as in model_step.py); --parts "amp ddp"
# runs only those parts (default: amp compile ddp model_step).
set -uo pipefail
cd "$(dirname "$0")/../.."

device=cuda
dry_run=0
out=work_dirs/gpu_check/gpu_check.json
config=configs/clcr_kinetics_sounds.py
shapes=()
selected="amp compile ddp model_step"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --shape) shapes+=(--shape "$2"); shift 2 ;;
    --parts) selected="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

py=${PYTHON:-python}
threads=()
if [ "$dry_run" = 1 ]; then
  # the same code paths on tiny inputs, runnable on a CPU; one thread, as
  # two on a shared 2-core machine make small ops 10-30x slower
  [ ${#shapes[@]} -eq 0 ] && shapes=(--shape rgb=3,2,32,32 --shape audio=1,32,16)
  batch=2; steps=2; repeats=1; threads=(--threads 1)
  limit_amp=300; limit_compile=300; limit_ddp=300; limit_step=300
  compile_backend=eager
else
  [ ${#shapes[@]} -eq 0 ] && shapes=(--shape rgb=3,3,224,224 --shape audio=1,1001,128)
  # seconds per part; together under 8 minutes
  batch=64; steps=5; repeats=5
  limit_amp=90; limit_compile=210; limit_ddp=90; limit_step=90
  compile_backend=inductor
fi
if [[ "$device" == cuda* ]]; then dist_backend=nccl; else dist_backend=gloo; fi
common=(--config "$config" "${shapes[@]}" --batch-size "$batch"
        --device "$device" --variants clcr late "${threads[@]}")

parts=$(mktemp -d)
trap 'rm -rf "$parts"' EXIT
# run NAME LIMIT CMD...: one part, its log in $parts/NAME.log, at most
# LIMIT seconds
run() {
  local name=$1 limit=$2; shift 2
  [[ " $selected " == *" $name "* ]] || return 0
  echo "== $name"
  timeout "$limit" "$@" >"$parts/$name.log" 2>&1
  local status=$?
  if [ "$status" != 0 ]; then
    echo "   $name failed (status $status; 124: over ${limit} s); its log" \
      'tail goes into the record'
    tail -n 5 "$parts/$name.log"
  fi
}

run amp "$limit_amp" "$py" tools/benchmark/gpu_check.py amp "${common[@]}" \
  --steps "$steps" --out "$parts/amp.json"
run compile "$limit_compile" "$py" tools/benchmark/gpu_check.py compile "${common[@]}" \
  --steps "$steps" --compile-backend "$compile_backend" \
  --out "$parts/compile.json"
run ddp "$limit_ddp" "$py" -m torch.distributed.run --standalone --nproc_per_node 1 \
  tools/benchmark/gpu_check.py ddp "${common[@]}" \
  --dist-backend "$dist_backend" --out "$parts/ddp.json"
run model_step "$limit_step" "$py" tools/benchmark/model_step.py "${common[@]}" \
  --memory --skip-flops --repeats "$repeats" --warmup 1 --quiet \
  --out "$parts/model_step.json"

mkdir -p "$(dirname "$out")"
GPU_CHECK_DRY_RUN=$dry_run \
GPU_CHECK_COMMAND="bash tools/benchmark/gpu_check.sh --device $device$([ "$dry_run" = 1 ] && echo ' --dry-run')" \
  "$py" tools/benchmark/gpu_check.py merge --parts-dir "$parts" --out "$out"
echo "wrote $out"
