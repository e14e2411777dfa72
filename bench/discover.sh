#!/usr/bin/env bash
# Discovery benchmark (issue 6): `sequin discover --top 20` over USERS generated users
# (default 1,000,000: about 21.9M events), the outcome `converted` of examples/seed.seg.
# Target: 30 s on this 2-core machine. The store is the one bench/live.sh imports for its
# state part (shared, imported once). Each run prints its phases (SEQUIN_TRACE=1) and its
# wall time and peak memory; runs must agree (the search does not depend on thread timing).
# usage: bench/discover.sh [USERS] [RUNS]   (default 1000000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-1000000}; RUNS=${2:-3}
DATA=bench/data/live; mkdir -p "$DATA"
cargo build --release -q
BIN=$PWD/target/release/sequin
PQ=$DATA/users_$USERS.parquet
[ -f "$PQ" ] || $BIN gen --out "$PQ" --users "$USERS" --seed 8 >/dev/null
ST=$DATA/st3_$USERS
if [ ! -f "$ST.imported" ]; then
  rm -rf "$ST"; $BIN import --store "$ST" "$PQ" >/dev/null 2>&1; touch "$ST.imported"
fi
for run in $(seq 1 "$RUNS"); do
  echo "== run $run: discover --outcome converted --top 20 over $USERS users"
  SEQUIN_TRACE=1 /usr/bin/time -f "wall %e s, peak RSS %M KB" \
    "$BIN" discover --store "$ST" --segments examples/seed.seg --outcome converted --top 20 \
    >"$DATA/discover_$run.txt" 2>"$DATA/discover_$run.err"
  grep -E "^discover|^wall" "$DATA/discover_$run.err"
  grep -E "^# [0-9]+\." "$DATA/discover_$run.txt" | cut -c1-110
  if [ "$run" -gt 1 ]; then
    if cmp -s <(grep -v "discovered in" "$DATA/discover_1.txt") <(grep -v "discovered in" "$DATA/discover_$run.txt"); then
      echo "same findings as run 1"
    else
      echo "DIFFERENT findings from run 1"
    fi
  fi
done
