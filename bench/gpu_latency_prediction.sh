#!/usr/bin/env bash
# Predicted against measured latency on this machine's GPU (issue #21), called by
# bench/gpu_reports.sh (its "latency prediction" section) or on its own:
#   bash bench/gpu_latency_prediction.sh      # writes reports/latency_prediction_<gpu>.{md,csv}
# The prediction uses the GPU's datasheet rates at the precision torch's defaults run each
# operator (float32 products at FP32, convolutions at TF32), and the stated default
# efficiencies (archcost/roofline/latency.py, GPU_DEFAULTS) until a GPU run fits them.
# Environment: OUT [reports], PYTHON [python], LATENCY_BATCHES [1 16], TF32 [torch-default].
set -euo pipefail
OUT=${OUT:-reports}
PYTHON=${PYTHON:-python}
LATENCY_BATCHES=${LATENCY_BATCHES:-"1 16"}
TF32=${TF32:-torch-default}
# shellcheck disable=SC2086
"$PYTHON" "$(dirname "$0")/latency_prediction.py" --target auto --tf32 "$TF32" --batches $LATENCY_BATCHES --out "$OUT"
