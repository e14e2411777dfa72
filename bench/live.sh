#!/usr/bin/env bash
# Live server benchmark (issue 4): `sequin serve` with the seed segments (examples/seed.seg)
# live, fed by `sequin load` over HTTP from generated Segment NDJSON.
#
#  1. throughput: as fast as it takes them, batches of 100, durable acknowledgement,
#     sustained (2M events: the memtable flushes to history under load); the server's CPU
#     seconds per thread are printed after;
#  2. latency: at a fixed rate (default 20k events/s), acknowledgement → membership change
#     over the change stream, p50/p99;
#  3. state size: USERS users imported, then backfilled by `serve`; bytes per user of the
#     live-state checkpoint and of the process's resident memory.
#
# Client and server share this machine's cores: figures are for both together.
#
# `sequin load` replays the file in event-time order, each device on one connection, the
# connections in step. The file compresses a month of 1,300 events per hour into seconds,
# and the connections keep up to two batches each (32 with 16 connections: about two hours
# of this file's event time) in flight, so the server runs with LATENESS (default 2h) of
# allowed lateness: live, 5 s of lateness at these rates spans hundreds of thousands of
# events. CONNECTIONS (default 16) sets the throughput part's connections: with 8, each
# waiting for its acknowledgement (a log sync), the cores sat about 15% idle.
# usage: bench/live.sh [EVENTS_FOR_LOAD] [RATE] [USERS_FOR_STATE]   (default 2000000 20000 1000000)
# The latency part sends LAT_EVENTS (default 400000) of them at RATE.
# PARTS="throughput latency state" (the default) picks the parts to run.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-2000000}; RATE=${2:-20000}; USERS=${3:-1000000}; LAT_EVENTS=${LAT_EVENTS:-400000}
LATENESS=${LATENESS:-2h}
CONNECTIONS=${CONNECTIONS:-16}
PARTS=${PARTS:-throughput latency state}
part() { [[ " $PARTS " == *" $1 "* ]]; }
DATA=bench/data/live; mkdir -p "$DATA"
cargo build --release -q
BIN=$PWD/target/release/sequin
SEG=$PWD/examples/seed.seg
export SEQUIN_WRITE_KEY=bench-w SEQUIN_READ_KEY=bench-r SEQUIN_ADMIN_KEY=bench-a
NDJSON=$DATA/events.ndjson
[ -f "$NDJSON" ] || $BIN gen --out "$NDJSON" --users $((EVENTS / 20)) --seed 7 >/dev/null
serve() { # store port
  rm -rf "$1"
  $BIN serve --store "$1" --segments "$SEG" --listen "127.0.0.1:$2" --no-idle-advance --lateness "$LATENESS" >"$1.log" 2>&1 &
  echo $! > "$1.pid"
  until curl -sf "127.0.0.1:$2/healthz" >/dev/null; do sleep 0.2; done
}
stop() { kill "$(cat "$1.pid")"; wait "$(cat "$1.pid")" 2>/dev/null || true; }

if part throughput; then
echo "== throughput: $EVENTS events, batches of 100, $CONNECTIONS connections, as fast as possible"
serve "$DATA/st1" 18181
# No change-stream reader here (the latency part has one): acknowledged throughput only.
env -u SEQUIN_READ_KEY $BIN load "$NDJSON" --url http://127.0.0.1:18181 --limit "$EVENTS" --batch 100 --connections "$CONNECTIONS" | tee "$DATA/st1.load"
# Live evaluation trails acknowledgement: wait until it has evaluated every event.
T0=$(date +%s.%N)
until [ "$(curl -s 127.0.0.1:18181/metrics | awk '/^sequin_live_backlog_events / {print $2}')" = 0 ]; do sleep 0.1; done
DRAIN=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
ACK_S=$(awk '/acknowledged/ {for (i = 1; i <= NF; i++) if ($i == "in") {sub("s:", "", $(i + 1)); print $(i + 1)}}' "$DATA/st1.load")
ACKED=$(awk '/acknowledged/ {for (i = 1; i <= NF; i++) if ($i == "acknowledged") print $(i + 1)}' "$DATA/st1.load")
awk -v n="$ACKED" -v a="$ACK_S" -v d="$DRAIN" 'BEGIN {
  printf "evaluated: every event %.1f s after the last acknowledgement: %.0f events/s acknowledged and evaluated\n", d, n / (a + d) }'
curl -s "127.0.0.1:18181/metrics" | grep -E "^sequin_(events_accepted_total|live_users|live_changes_total|live_rebuilds_total|live_rebuilt_events_total) "
echo "server CPU seconds by thread:"
for t in /proc/"$(cat "$DATA/st1.pid")"/task/*; do
  awk -v c="$(cat "$t/comm")" '{print c, ($14 + $15) / 100}' "$t/stat"
done | awk '{a[$1] += $2} END {for (k in a) printf "  %s %.1f", k, a[k]; print ""}'
stop "$DATA/st1"
fi

if part latency; then
echo "== latency: $RATE events/s, acknowledgement → membership change"
serve "$DATA/st2" 18182
$BIN load "$NDJSON" --url http://127.0.0.1:18182 --limit "$LAT_EVENTS" --batch 100 --connections 8 --rate "$RATE" --read-key "$SEQUIN_READ_KEY"
stop "$DATA/st2"
fi

part state || exit 0
echo "== state: $USERS users imported, then backfilled by serve"
PQ=$DATA/users_$USERS.parquet
[ -f "$PQ" ] || $BIN gen --out "$PQ" --users "$USERS" --seed 8 >/dev/null
ST=$DATA/st3_$USERS
if [ ! -f "$ST.imported" ]; then
  rm -rf "$ST"; $BIN import --store "$ST" "$PQ" >/dev/null 2>&1; touch "$ST.imported"
fi
rm -rf "$ST/live"
$BIN serve --store "$ST" --segments "$SEG" --listen 127.0.0.1:18183 --no-idle-advance >"$ST.log" 2>&1 &
PID=$!
until curl -sf 127.0.0.1:18183/healthz >/dev/null; do sleep 0.5; done
cat "$ST.log"
M=$(curl -s 127.0.0.1:18183/metrics)
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
kill $PID; wait $PID 2>/dev/null || true
LIVE_USERS=$(echo "$M" | awk '/^sequin_live_users / {print $2}')
CK=$(echo "$M" | awk '/^sequin_live_checkpoint_bytes / {print $2}')
SB=$(echo "$M" | awk '/^sequin_live_state_bytes / {print $2}')
echo "users with live state: $LIVE_USERS"
echo "live state (encoded users + keys): $SB bytes = $((SB / LIVE_USERS)) bytes/user"
echo "checkpoint (state + memberships): $CK bytes = $((CK / LIVE_USERS)) bytes/user"
echo "resident memory: $((RSS_KB / 1024)) MB = $((RSS_KB * 1024 / LIVE_USERS)) bytes/user (includes the store's memtable and indexes)"
