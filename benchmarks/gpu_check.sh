#!/usr/bin/env bash
# Prepared GPU check (issue 15): one H200, no internet, <= 8 minutes. Prepare its inputs here first with
# `make gpu-bundle` (benchmarks/gpu_bundle.sh: wheels the image lacks in .whl/, the embedded model's config + tokenizer
# in .gpu_model/, the data mirror linked as shared/), then one device call:
#   carry [".whl", ".gpu_model", "shared/data"], command "bash benchmarks/gpu_check.sh", timeout_s 560.
# The device image has python 3.12, torch, transformers, peft, accelerate, numpy, pandas, pyarrow, scipy, ...; the
# GGUF of the embedded model is over the 64 MiB a call carries, so the model here is SmolLM2-135M's exact shape with
# random weights (speed ratios depend on shapes; a random model never stops early, so every generation runs to
# max_new_tokens: this measures speed, never quality). It prints versions, then each benchmark's ratios (`make bench`
# on CUDA, bigger sizes) and a reduced smoke reproduce with its per-stage breakdown; it asserts nothing.
#
# GPU_CHECK_ONLY=<regex> runs only the steps whose title matches it (a rerun of some steps: "CPQS|reproduce").
# GPU_CHECK_DRY=1 runs the same steps here with the current python and tiny sizes (a rehearsal of the script on CPU:
# no install, no CUDA), so a device session never spends its minutes on a broken script.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
export CPQS_DATA_MIRROR="${CPQS_DATA_MIRROR:-$(pwd)/shared/data}"
export CPQS_CACHE="${CPQS_CACHE:-/tmp/cpqs-cache}"
PY="${PYTHON:-python3}"
DRY="${GPU_CHECK_DRY:-0}"
MODEL_DIR="${GPU_CHECK_MODEL:-/tmp/cpqs-gpu-model}"
if [ "$DRY" = 1 ]; then
  N_CPQS=16 N_IFD=8 N_SFT=8 N_EVAL=2 STEP_TIMEOUT=400 REPRO_TIMEOUT=400
else
  N_CPQS=400 N_IFD=200 N_SFT=128 N_EVAL=32 STEP_TIMEOUT=150 REPRO_TIMEOUT=300
fi
start=$(date +%s)
[ -d "$CPQS_DATA_MIRROR" ] || { echo "no data mirror at $CPQS_DATA_MIRROR (carry shared/data; see make gpu-bundle)"; exit 2; }
[ -f .gpu_model/config.json ] || { echo "no .gpu_model/config.json (carry .gpu_model; see make gpu-bundle)"; exit 2; }

if [ "$DRY" != 1 ]; then
  [ -d .whl ] || { echo "no .whl/ (carry .whl; see make gpu-bundle)"; exit 2; }
  # datasets >= 5 needs pyarrow >= 24; an older image pyarrow takes the fallback wheel
  arrow=$("$PY" -c "import pyarrow; print(pyarrow.__version__.split('.')[0])")
  wheels=(.whl/*.whl)
  if [ "$arrow" -lt 24 ]; then
    wheels=($(ls .whl/*.whl | grep -v '/datasets-') .whl/fallback/datasets-*.whl)
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "${wheels[@]}" || { echo "wheel install failed"; exit 3; }
  export PYTHONPATH="/tmp/site:$(pwd)"
else
  export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
fi

"$PY" - "$MODEL_DIR" <<'PY' || { echo "could not build the model"; exit 4; }
# SmolLM2-135M-Instruct's shape (config + tokenizer from .gpu_model/), random weights, saved once per machine.
import shutil, sys
from importlib.metadata import version
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForCausalLM
out = Path(sys.argv[1])
cuda = torch.cuda.is_available()
print("cuda", cuda, torch.cuda.get_device_name(0) if cuda else "-", "bf16", cuda and torch.cuda.is_bf16_supported())
print("versions:", ", ".join(f"{p} {version(p)}" for p in
      ("torch", "transformers", "peft", "accelerate", "lm_eval", "datasets", "pyarrow", "numpy")))
if not (out / "model.safetensors").exists():
    cfg = AutoConfig.from_pretrained(".gpu_model")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for f in Path(".gpu_model").iterdir():
        if f.name != "config.json":
            shutil.copy(f, out / f.name)
print(f"model {out}: {sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(out).parameters()) / 1e6:.1f} M "
      "parameters (random weights, SmolLM2-135M shape)")
PY

ONLY="${GPU_CHECK_ONLY:-}"  # e.g. GPU_CHECK_ONLY='CPQS|reproduce': run only the steps whose title matches it
step() {
  local title="$1" limit="$STEP_TIMEOUT"; shift
  if [ -n "$ONLY" ] && ! [[ "$title" =~ $ONLY ]]; then return 0; fi
  [[ "$title" == *reproduce* ]] && limit="$REPRO_TIMEOUT"
  echo; echo "=== $title ($(( $(date +%s) - start )) s elapsed)"
  timeout "$limit" "$@" || echo "step failed (rc $?)"
}
step "CPQS scoring vs limit" "$PY" benchmarks/bench_cpqs.py --model "$MODEL_DIR" --n "$N_CPQS" --n-b 8 --rounds 1 \
  --rss-n 4
# the paper presets' selectors.batch_size (16 examples = 32 sequences per forward); the limit tries 8/16/32
step "IFD scoring vs limit" "$PY" benchmarks/bench_ifd.py --model "$MODEL_DIR" --n "$N_IFD" --skip-cherry \
  --pipeline-batch 16 --batch-sizes 8,16,32
step "SFT vs bare packed LoRA loop" "$PY" benchmarks/bench_sft.py --model "$MODEL_DIR" --n "$N_SFT" --rounds 2
step "Evaluation vs bare generate" "$PY" benchmarks/bench_eval.py --model "$MODEL_DIR" --limit "$N_EVAL"
# one seed, two selectors, small evaluation: every stage kind runs on CUDA (scoring, negatives + CNN, fine-tuning,
# lm-eval generation + loglikelihood, the code sandbox, the leaderboard). A random model never emits a stop token, so
# its negatives are all unfinished: kept here (generation_drop_unfinished=false) since this run measures speed only.
step "reduced smoke reproduce" "$PY" -m cpqs_bench.cli reproduce --config smoke experiment.name=gpu-smoke \
  experiment.output_dir=/tmp/cpqs-gpu-runs "experiment.seeds=[0]" "model.id=$MODEL_DIR" \
  "selectors.proxy_model=$MODEL_DIR" "selectors.cpqs.generator=$MODEL_DIR" "selectors.names=[random,cpqs]" \
  selectors.cpqs.n_pairs=40 selectors.cpqs.generation_drop_unfinished=false evaluate.limit=2 "evaluate.task_limits={}" evaluate.allow_weaker_sandbox=true \
  publish.enabled=false
echo; echo "gpu_check done in $(( $(date +%s) - start )) s"
