#!/usr/bin/env bash
# Import benchmark on the reference workload (../shared/bench/WORKLOAD.md):
# 10M events, 1M users, as Parquet and as flat NDJSON; plus Segment-format NDJSON from
# `sequin gen`. Prints the median of 3 runs (fresh store each) and the store's size.
#
# usage: bench/import.sh [EVENTS] [USERS]      (defaults: 10000000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}
USERS=${2:-1000000}
DATA=bench/data
mkdir -p "$DATA"
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q numpy pyarrow
fi
PQ="$DATA/events_${EVENTS}.parquet"
NJ="$DATA/events_${EVENTS}.ndjson"
[ -f "$PQ" ] || bench/.venv/bin/python ../shared/bench/gen_events.py "$PQ" "$EVENTS" "$USERS"
[ -f "$NJ" ] || bench/.venv/bin/python - "$PQ" "$NJ" <<'PY'
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pydict()
with open(sys.argv[2], "w") as f:
    for u, ts, e in zip(t["user_id"], t["ts"], t["event"]):
        f.write('{"user_id":%d,"ts":%d,"event":"%s"}\n' % (u, ts, e))
PY
SEG="$DATA/segment_100k.ndjson"
cargo build --release -q
BIN=target/release/sequin
[ -f "$SEG" ] || $BIN gen --out "$SEG" --users 100000 --seed 1 2>/dev/null

run() { # label file rows
  local label=$1 file=$2 rows=$3 times=()
  for i in 1 2 3; do
    local store="$DATA/store_bench"
    rm -rf "$store"
    local t0=$(date +%s.%N)
    $BIN import --store "$store" "$file" 2>/dev/null
    local t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  local med=$(printf '%s\n' "${times[@]}" | sort -g | sed -n 2p)
  local size=$(du -sb "$DATA/store_bench" | cut -f1)
  local input=$(stat -c %s "$file")
  printf '%-22s %10d events  median %6.2fs  %9.0f events/s  store %6.1f MB (input %7.1f MB)\n' \
    "$label" "$rows" "$med" "$(echo "$rows / $med" | bc -l)" "$(echo "$size/1000000" | bc -l)" "$(echo "$input/1000000" | bc -l)"
}
echo "import, median of 3 (wall clock, including the final compaction into Parquet history):"
run "parquet (reference)" "$PQ" "$EVENTS"
run "ndjson flat" "$NJ" "$EVENTS"
SEGROWS=$(wc -l < "$SEG")
run "ndjson segment (gen)" "$SEG" "$SEGROWS"
rm -rf "$DATA/store_bench"
