"""Peer engines on the reference workload (../shared/bench/WORKLOAD.md).

usage: peers.py ENGINE QUERY PARQUET [RUNS]
  ENGINE: chdb | duckdb | exact   (exact: DuckDB SQL that follows Sequin's semantics)
Prints one JSON line: engine, query, count, median seconds of RUNS runs in this process,
peak RSS of this process (MB). Runs with 2 threads.
"""
import json, resource, statistics, sys, time

engine, query, path = sys.argv[1], sys.argv[2], sys.argv[3]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3

CH = {
    "q1": f"""SELECT count() FROM (SELECT user_id, windowFunnel(3600)(toDateTime(ts), event='page_view', event='view_item', event='add_to_cart', event='purchase') AS l FROM file('{path}', Parquet) GROUP BY user_id) WHERE l = 4""",
    "q3": f"""SELECT count() FROM (SELECT user_id FROM file('{path}', Parquet) WHERE event='search' GROUP BY user_id HAVING windowFunnel(3600,'strict_once')(toDateTime(ts), event='search', event='search', event='search') = 3)""",
}

# Sequin's semantics, written independently in SQL. Events are ordered by (ts, row number):
# the file is in time order, so the row number is the arrival order.
BASE = f"SELECT user_id, ts::BIGINT AS ts, event::VARCHAR AS event, file_row_number AS rn FROM read_parquet('{path}', file_row_number=true)"
EXACT = {
    # For each page_view, the greedy earliest continuation is optimal for that start.
    "q1": f"""
WITH t AS ({BASE}),
n AS (
  SELECT *,
    min(CASE WHEN event='view_item' THEN rn END) OVER w AS nx_vi,
    min(CASE WHEN event='add_to_cart' THEN rn END) OVER w AS nx_atc,
    min(CASE WHEN event='purchase' THEN rn END) OVER w AS nx_pur
  FROM t
  WINDOW w AS (PARTITION BY user_id ORDER BY rn ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
)
SELECT count(DISTINCT a.user_id) FROM n a
JOIN n b ON b.rn = a.nx_vi
JOIN n c ON c.rn = b.nx_atc
JOIN n d ON d.rn = c.nx_pur
WHERE a.event = 'page_view' AND d.ts - a.ts <= 3600""",
    # add_to_cart, then the first begin_checkout after it within 30 minutes, no purchase between.
    "q2": f"""
WITH t AS ({BASE}),
n AS (
  SELECT *,
    min(CASE WHEN event='begin_checkout' THEN rn END) OVER w AS nx_bc,
    min(CASE WHEN event='purchase' THEN rn END) OVER w AS nx_pur
  FROM t
  WINDOW w AS (PARTITION BY user_id ORDER BY rn ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
)
SELECT count(DISTINCT a.user_id) FROM n a JOIN n b ON b.rn = a.nx_bc
WHERE a.event = 'add_to_cart' AND b.ts - a.ts <= 1800 AND (a.nx_pur IS NULL OR a.nx_pur > b.rn)""",
    # Three searches within an hour: some search and the second search after it.
    "q3": f"""
WITH s AS (SELECT user_id, ts, lead(ts, 2) OVER (PARTITION BY user_id ORDER BY rn) AS ts2
           FROM ({BASE}) WHERE event = 'search')
SELECT count(DISTINCT user_id) FROM s WHERE ts2 - ts <= 3600""",
}
DUCK = dict(EXACT)

if engine == "chdb":
    import chdb
    sql = CH[query]
    run = lambda: int(chdb.query(sql + " SETTINGS max_threads=2", "CSV").bytes().decode().strip())
elif engine in ("duckdb", "exact"):
    import duckdb
    con = duckdb.connect()
    con.execute("SET threads=2")
    sql = (DUCK if engine == "duckdb" else EXACT)[query]
    run = lambda: con.execute(sql).fetchone()[0]
else:
    sys.exit(f"unknown engine {engine}")

times, count = [], None
for _ in range(runs):
    t0 = time.perf_counter()
    count = run()
    times.append(time.perf_counter() - t0)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"engine": engine, "query": query, "count": count,
                  "seconds": statistics.median(times), "peak_mb": round(peak_mb)}))
