#!/usr/bin/env bash
# Prepares what benchmarks/gpu_check.sh needs on a device machine that has no internet (run it HERE, where PyPI is
# reachable; `make gpu-bundle`). Three ignored folders, each named in the device call's `carry`:
#   .whl/        py3.12 wheels of what the device image lacks (lm-eval, datasets, evaluate and their pure-Python
#                needs; the image already has torch, transformers, peft, accelerate, numpy, pandas, pyarrow, scipy,
#                scikit-learn, sacrebleu, ...: see the device tool's KINDS.md). Versions = this checkout's .venv, so
#                the device runs what the tests here ran. sdist-only packages are built into wheels here.
#   .gpu_model/  the embedded model's config, tokenizer and chat template, no weights: the GGUF (98 MB) is over the
#                64 MiB a call carries, so gpu_check.sh builds a same-shape model with random weights there.
#                Throughput ratios depend on shapes, not on weight values (a random model never emits its EOS, so
#                every generation runs to max_new_tokens: the check measures speed, never quality).
#   shared -> ../shared (a link, in .git/info/exclude): carry `shared/data` and the data mirror travels through it.
# Prints the size that would travel; the device limit is 64 MiB for the whole working tree plus carried paths.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=".venv/bin/pip"
[ -x "$PIP" ] || { echo "no .venv here: run make install first" >&2; exit 1; }
ver() { "$PIP" show "$1" 2>/dev/null | awk '/^Version:/{print $2}'; }

# what the device image lacks (KINDS.md's package list), pinned to this .venv's versions
CARRY=(lm_eval datasets evaluate dill multiprocess more-itertools nltk pytablewriter DataProperty mbstrdecoder
       chardet pathvalidate tabledata tcolorpy typepy pytz defusedxml httpx2 httpcore2 truststore)
SDIST_ONLY=(sqlitedict word2number rouge_score)
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p .whl
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
specs=()
for p in "${CARRY[@]}"; do
  v=$(ver "$p")
  if [ -n "$v" ]; then specs+=("$p==$v"); else echo "note: $p is not in .venv; not carried"; fi
done
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
  -d .whl "${specs[@]}"
# datasets >= 5 needs pyarrow >= 24; gpu_check.sh falls back to this one where the image's pyarrow is older
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
  -d .whl/fallback "datasets==4.8.5"
for p in "${SDIST_ONLY[@]}"; do
  "$PIP" wheel --quiet --no-deps -w .whl "$p==$(ver "$p")"
done

# the model's shape and tokenizer, no weights
src=$(.venv/bin/python -c "from cpqs_bench import models; print(models.resolve('embedded', None)[0])")
mkdir -p .gpu_model
grep -qxF "/.gpu_model/" .git/info/exclude || echo "/.gpu_model/" >> .git/info/exclude
for f in config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
  [ -f "$src/$f" ] && cp "$src/$f" .gpu_model/
done

# the data mirror, through a link (never copied into the repo)
if [ ! -e shared ]; then ln -s ../shared shared; fi
grep -qxF "/shared" .git/info/exclude || echo "/shared" >> .git/info/exclude

tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cbL .whl .gpu_model shared/data | tail -1 | cut -f1)
echo "wheels: $(ls .whl/*.whl | wc -l) (+ fallback datasets); model files: $(ls .gpu_model | wc -l)"
echo "would travel: tracked tree $((tree / 1048576)) MiB + carried $((carried / 1048576)) MiB (limit 64 MiB)"
echo 'device call: carry [".whl", ".gpu_model", "shared/data"], command: bash benchmarks/gpu_check.sh'
