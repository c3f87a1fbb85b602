#!/bin/bash
# The GPU checks of issue 2 in one run (on a lent H100/H200; see docs/benchmarks.md).  Not yet timed on a
# device; each of its six runs is capped at 240 s and writes its own files to $OUT, most important first,
# so a call cut off at its time limit still returns the runs that finished.
# Needs .gpu/tok (the default model's tokenizer files) and .gpu/alpagasus_random_9k.json beside the tree:
#   mkdir -p .gpu/tok && cp ~/.cache/tunesift/models/*/tok* .gpu/tok/ && cp ../shared/data/train/alpaca/alpagasus_random_9k.json .gpu/
# Runs: each model eager; 135M with each pass tokenised whole before its first batch (the old way: an
# A/B of the sliced tokenisation that overlaps the device); each model with the body compiled (the
# compile falls in the untimed warm-up); the 1.7B model with a doubled token budget.  RUN_DIVERSITY=1 adds the k-center benchmark (issue 5).
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
B="python3 benchmarks/likelihood.py --device cuda --dtype bfloat16 --tokenizer .gpu/tok --data .gpu/alpagasus_random_9k.json --warmup 300 --share-prefix off"
run() {   # name, then benchmark arguments
  local name=$1; shift
  echo "== $name"
  timeout 240 $B "$@" --json "$OUT/$name.json" 2>&1 | grep -v Warning | tee "$OUT/$name.txt"
}
run lik_135m_eager --random-init smollm2-135m --n 9229 --batch-tokens 131072 --reference-seconds 8
run lik_1.7b_eager --random-init llama-1.7b --n 4000 --batch-tokens 65536 --reference-seconds 8
run lik_135m_unsliced --random-init smollm2-135m --n 9229 --batch-tokens 131072 --reference-seconds 0 --prepare-chunk 1000000000
run lik_135m_compiled --random-init smollm2-135m --n 9229 --batch-tokens 131072 --reference-seconds 0 --compile on
run lik_1.7b_compiled --random-init llama-1.7b --n 4000 --batch-tokens 65536 --reference-seconds 0 --compile on
run lik_1.7b_eager_131k --random-init llama-1.7b --n 4000 --batch-tokens 131072 --reference-seconds 0
[ -z "$RUN_DIVERSITY" ] || python3 benchmarks/diversity.py --device cuda 2>&1 | tee "$OUT/diversity.txt"
# Scale-out (issue 14): one Ray GPU worker vs the in-process engine (target ratio >= 0.95).  Needs Ray
# (pip install "ray>=2.9") and the converted default model in .gpu/model:
#   mkdir -p .gpu/model && cp -r ~/.cache/tunesift/models/smollm2-135m-instruct-*/. .gpu/model/
if [ -d .gpu/model ]; then
  echo "== scaleout_1gpu"
  timeout 240 python3 benchmarks/scaleout.py speed --n 2000 --workers 1 --device cuda --dtype bfloat16 \
    --model .gpu/model 2>&1 | grep -v Warning | tee "$OUT/scaleout_1gpu.txt"
fi
