#!/usr/bin/env bash
# The CPU leaderboard (issue 18), resumable: each cell (method x seed) is a JSON file under
# docs/leaderboard/cpu/cells, keyed by the pool's and evaluations' contents, the training settings
# and the code version; a finished cell is never paid for twice.  Order: the references first (the
# full-pool model decides which evaluations carry signal), then one method at a time, all its seeds.
#   bash benchmarks/leaderboard_cpu.sh            # run (or resume) everything, then write the report
#   LB_METHODS="rds cluster" bash benchmarks/leaderboard_cpu.sh   # only these methods
#   LB_METHODS="less,bids,g2is" LB_SEEDS=1 bash benchmarks/leaderboard_cpu.sh   # seed 0 of a group
#     (LESS, BIDS and G2IS share one warm-up and its gradient features through the cache)
set -uo pipefail
cd "$(dirname "$0")/.."
POOL=${LB_POOL:-../shared/data/train/alpaca/alpaca_reconstructed.jsonl.gz}
OUT=docs/leaderboard/cpu
COMMON=(--preset leaderboard-cpu --eval-root ../shared/data/eval --on-error skip
        --cache-dir "${LB_CACHE:-$HOME/.cache/tunesift/leaderboard-cpu}" -o "$OUT")
METHODS=${LB_METHODS:-"kcenter rds cluster dpp qdit deita-filter rifd superfiltering-d selectit deita-scorers less bids g2is ifd-pre delift learning-percentage diverseevol lead ifd superfiltering perplexity"}
# references: random x 3, the untrained base model, the full pool
.venv/bin/tunesift bench "$POOL" "${COMMON[@]}" --methods random || true
for m in $METHODS; do
  .venv/bin/tunesift bench "$POOL" "${COMMON[@]}" --methods "$m" ${LB_SEEDS:+--seeds "$LB_SEEDS"} \
    --no-random --no-full --no-base \
    || echo "leaderboard_cpu: $m failed; its cells stay unfinished" >&2
done
.venv/bin/tunesift bench "$POOL" "${COMMON[@]}" --report-only --markdown docs/leaderboard.md \
  --notes docs/leaderboard/notes.md
