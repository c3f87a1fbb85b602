#!/bin/bash
# The GPU checks of issues 2 and 5 in one run (on a lent H100/H200; see docs/benchmarks.md).
# Needs .gpu/tok (the default model's tokenizer files) and .gpu/alpagasus_random_9k.json beside the tree:
#   mkdir -p .gpu/tok && cp ~/.cache/tunesift/models/*/tok* .gpu/tok/ && cp ../shared/data/train/alpaca/alpagasus_random_9k.json .gpu/
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
B="python3 benchmarks/likelihood.py --device cuda --dtype bfloat16 --tokenizer .gpu/tok --data .gpu/alpagasus_random_9k.json --warmup 300"
for sp in off on; do
  R=0; [ $sp = off ] && R=8
  $B --random-init smollm2-135m --n 9229 --batch-tokens 131072 --share-prefix $sp --reference-seconds $R \
     --json "$OUT/lik_135m_$sp.json" 2>&1 | grep -v Warning | tee "$OUT/lik_135m_$sp.txt"
  $B --random-init llama-1.7b --n 4000 --batch-tokens 65536 --share-prefix $sp --reference-seconds $R \
     --json "$OUT/lik_1.7b_$sp.json" 2>&1 | grep -v Warning | tee "$OUT/lik_1.7b_$sp.txt"
done
[ -n "$SKIP_DIVERSITY" ] || python3 benchmarks/diversity.py --device cuda 2>&1 | tee "$OUT/diversity.txt"
