#!/usr/bin/env bash
# Segment evaluation benchmark on the reference workload (../shared/bench/WORKLOAD.md):
# Sequin `eval` from its store vs chDB and DuckDB from the Parquet file, side by side in one
# run, at 1× (10M events, 1M users) and 3× (30M events, 3M users). Prints median times of 3
# runs, peak memory, ratios, and checks Sequin's counts against exact DuckDB SQL that follows
# Sequin's semantics (bench/peers.py).
#
# usage: bench/segments.sh [SCALES...]      (default: 1 3)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=${*:-1 3}
DATA=bench/data
mkdir -p "$DATA"
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import chdb, duckdb, pyarrow" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/requirements.txt
fi
PY=bench/.venv/bin/python
cargo build --release -q
BIN=target/release/sequin
SEG="$DATA/queries.seg"
cat > "$SEG" <<'SEG'
# Q1: page_view → view_item → add_to_cart → purchase, all within one hour of the first step
segment q1 { sequence within 1h { page_view; view_item; add_to_cart; purchase } }
# Q2: add_to_cart, then begin_checkout within 30 minutes of it, no purchase in between
segment q2 { sequence { add_to_cart; not purchase; begin_checkout within 30m } }
# Q3: at least 3 searches inside some one-hour span
segment q3 { sequence within 1h { search; search; search } }
SEG

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-6s %-3s %-8s %9s %9s %10s %12s\n" scale q engine seconds peak_MB count "sequin_x"
for s in $SCALES; do
  EVENTS=$((s * 10000000)); USERS=$((s * 1000000))
  PQ="$DATA/events_${EVENTS}.parquet"
  STORE="$DATA/store_${EVENTS}"
  [ -f "$PQ" ] || $PY ../shared/bench/gen_events.py "$PQ" "$EVENTS" "$USERS" >/dev/null
  if [ ! -f "$STORE/MANIFEST.json" ]; then
    rm -rf "$STORE"
    $BIN import --store "$STORE" "$PQ" --unit user_id --time ts --event event 2>/dev/null
  fi
  for q in q1 q2 q3; do
    times=(); peak=0; count=0
    for i in 1 2 3; do
      out=$( { /usr/bin/time -f "TIME %e %M" $BIN eval --store "$STORE" --segments "$SEG" --segment $q -o /dev/null; } 2>&1 )
      t=$(echo "$out" | awk '/^TIME/ {print $2}'); m=$(echo "$out" | awk '/^TIME/ {print $3}')
      count=$(echo "$out" | awk -v q=$q '$1 == q":" {print $2}')
      times+=("$t"); [ "$m" -gt "$peak" ] && peak=$m
    done
    st=$(printf "%s\n" "${times[@]}" | median)
    printf "%-6s %-3s %-8s %9.3f %9d %10s %12s\n" "${s}x" $q sequin "$st" $((peak / 1024)) "$count" "-"
    peers="exact"
    case $q in q1|q3) peers="chdb duckdb exact";; q2) peers="duckdb exact";; esac
    for p in $peers; do
      runs=3; [ $p = exact ] && runs=1
      engine=$p; [ $p = duckdb ] && engine=duckdb
      j=$($PY bench/peers.py $engine $q "$PQ" $runs)
      ps=$(echo "$j" | $PY -c "import json,sys; print(json.load(sys.stdin)['seconds'])")
      pm=$(echo "$j" | $PY -c "import json,sys; print(json.load(sys.stdin)['peak_mb'])")
      pc=$(echo "$j" | $PY -c "import json,sys; print(json.load(sys.stdin)['count'])")
      ratio=$(echo "$ps / $st" | bc -l)
      printf "%-6s %-3s %-8s %9.3f %9d %10s %11.2fx\n" "${s}x" $q $p "$ps" "$pm" "$pc" "$ratio"
      if [ $p = exact ] && [ "$pc" != "$count" ]; then
        echo "MISMATCH: sequin $q counted $count, exact SQL $pc" >&2; exit 1
      fi
    done
  done
done
echo "sequin_x: peer time / Sequin time (higher = Sequin faster). 'exact' is DuckDB SQL written to follow Sequin's semantics; counts must match it." 
