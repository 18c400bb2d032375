#!/usr/bin/env bash
# The GPU reports of issue #5 in one run, on a machine with a CUDA GPU:
#   bash bench/gpu_reports.sh            # writes under reports/, file names carry the GPU
# Every report names its conditions (GPU, dtype, batch, torch version) in its CSV and in
# its file name, e.g. reports/table_nvidia-h100-80gb-hbm3_float32_b1_latency.csv (the naming
# rule: README, "Report names").
#
# Environment (defaults in brackets): DEVICE [cuda], OUT [reports],
# MODELS [the lecture line-up], LAYER_MODEL [vgg16], BATCHES [1,2,4,...,64], REPEAT [50],
# WARMUP [10], PYTHON [python] (archcost runs as "$PYTHON -m archcost.cli"), TARGET [auto on cuda,
# else cpu] (the roofline's device), ROOFLINE_BATCHES [1 16]; for the device ledger's check
# (issue #20): LEDGER_MODELS [zoo line-up of bench/gpu_memcheck.py], LEDGER_OTHERS [its ten
# torchvision networks], LEDGER_BATCH [8], LEDGER_GPU [t4: the GPU predicted for on DEVICE=cpu].
# DEVICE=cpu with small MODELS/BATCHES runs the same steps on CPU (the tests do); the ledger's
# check is then a dry run (predictions, no measurement).
set -euo pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-reports}
MODELS=${MODELS:-"alexnet vgg16 googlenet resnet50 densenet121"}
LAYER_MODEL=${LAYER_MODEL:-vgg16}
BATCHES=${BATCHES:-"1,2,4,...,64"}
REPEAT=${REPEAT:-50}
WARMUP=${WARMUP:-10}
PYTHON=${PYTHON:-python}
if [ "$DEVICE" = cuda ]; then TARGET=${TARGET:-auto}; else TARGET=${TARGET:-cpu}; fi
ROOFLINE_BATCHES=${ROOFLINE_BATCHES:-"1 16"}
LEDGER_BATCH=${LEDGER_BATCH:-8}
LEDGER_GPU=${LEDGER_GPU:-t4}
archcost() { "$PYTHON" -m archcost.cli "$@"; }
mkdir -p "$OUT"
run="--device $DEVICE --repeat $REPEAT --warmup $WARMUP --out $OUT"

# Memory vs compute at batch 1 with latency, fp32 and fp16 autocast.
archcost table $MODELS --latency $run
archcost table $MODELS --latency --dtype float16 --amp $run
# Memory and latency against batch size (Canziani et al. 2016, Bianco et al. 2018).
archcost sweep $MODELS --batch-sizes "$BATCHES" $run
# Per-layer latency, with the hooks' overhead stated.
archcost layer-breakdown "$LAYER_MODEL" --latency $run
# The tracker's peak_bytes/saved_bytes against the allocator, per model.
slug=$("$PYTHON" -c "from archcost.devices import slug; print(slug('$DEVICE'))")
for m in $MODELS; do
    target="$OUT/memcheck_${m}_${slug}_float32_b1.csv"
    archcost memory "$m" --device "$DEVICE" --format csv > "$target.tmp"
    mv "$target.tmp" "$target"
done
# The roofline (issue #15): the bound from this GPU's datasheet figures beside the measured
# time, per model and for VGG16's ten heaviest layers, and the table with the bound.
archcost table $MODELS --latency --no-memory --target "$TARGET" --device "$DEVICE" --repeat "$REPEAT" \
    --warmup "$WARMUP" --no-save --format csv > "$OUT/table_roofline_${slug}_float32_b1.csv.tmp"
mv "$OUT/table_roofline_${slug}_float32_b1.csv.tmp" "$OUT/table_roofline_${slug}_float32_b1.csv"
# shellcheck disable=SC2086
"$PYTHON" "$(dirname "$0")/roofline_bench.py" --target "$TARGET" --models $MODELS --batches $ROOFLINE_BATCHES --out "$OUT"
# The device ledger (issue #20): predicted max_memory_allocated / max_memory_reserved / driver
# used against torch.cuda's, inference and a training step -> $OUT/gpu_memcheck_<device>.csv.
ledger_args=(--device "$DEVICE" --gpu "$LEDGER_GPU" --batch "$LEDGER_BATCH" --out "$OUT")
# shellcheck disable=SC2086
if [ -n "${LEDGER_MODELS+x}" ]; then ledger_args+=(--models $LEDGER_MODELS); fi
# shellcheck disable=SC2086
if [ -n "${LEDGER_OTHERS+x}" ]; then ledger_args+=(--others $LEDGER_OTHERS); fi
# A model that fails is a row with its error in notes (exit 1 at the end): the other reports still run.
"$PYTHON" "$(dirname "$0")/gpu_memcheck.py" "${ledger_args[@]}" || echo "gpu_memcheck: some models failed, see notes"

# ---- latency prediction (issue #21): predicted against measured on this GPU -------------
# Kept in its own script; this section only calls it (OUT and PYTHON carry over). On CPU
# the same report comes from `python bench/latency_prediction.py` (minutes: not run here).
if [ "$DEVICE" = cuda ]; then
    OUT="$OUT" PYTHON="$PYTHON" bash "$(dirname "$0")/gpu_latency_prediction.sh"
fi
# ---- end latency prediction --------------------------------------------------------------
echo "wrote the $DEVICE reports under $OUT/"
