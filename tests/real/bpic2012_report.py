"""Independent cross-check of `sequin report` group counts on BPIC 2012, in DuckDB SQL.

usage: bpic2012_report.py EVENTS_CSV
Prints JSON {"SEGMENT/OUTCOME/BASE": {"members": {...}, "non_members": {...}}} with units,
pending, decided, reached per group, for the reports of tests/real/bpic2012_report.seg.

Semantics restated from docs/insights.md: members are anchored at their segment entry,
non-members at their base entry (or first event); the outcome looks at events strictly
after the anchor; with a horizon H, a unit is pending when anchor + H is past the last
event of the log, else it is decided on (anchor, anchor + H].
"""
import json, sys
import duckdb

con = duckdb.connect()
con.execute("SET threads=1")  # keeps the scan in file order for row numbers
con.execute(f"""
CREATE TABLE e AS
SELECT row_number() OVER () AS rn, case_id::VARCHAR AS c, activity AS a, lifecycle AS l,
       epoch_ms(timestamp::TIMESTAMP) AS ts, amount_req
FROM read_csv('{sys.argv[1]}', header=true, all_varchar=true)""")
con.execute("CREATE TABLE o AS SELECT row_number() OVER (ORDER BY c, ts, rn) AS o, * FROM e")
(END,) = con.execute("SELECT max(ts) FROM e").fetchone()
D = 24 * 3600 * 1000

# Entry time per member, per segment.
ENTRY = {
    "submitted": "SELECT c, min(ts) AS t FROM o WHERE a = 'A_SUBMITTED' GROUP BY c",
    "large_request": """SELECT c, min(ts) AS t FROM o
        WHERE a = 'A_SUBMITTED' AND amount_req::BIGINT >= 20000 GROUP BY c""",
    # The third completion (in event order).
    "completion_repeated": """SELECT c, ts AS t FROM (
        SELECT c, ts, row_number() OVER (PARTITION BY c ORDER BY o) AS k FROM o
        WHERE a = 'W_Completeren aanvraag' AND l = 'COMPLETE') WHERE k = 3""",
}
# Outcome: (horizon or None, SQL condition over events x strictly after anchor A of case c).
OUTCOME = {
    "cancelled_30d": (30 * D, "EXISTS (SELECT 1 FROM o x WHERE x.c = p.c AND x.a = 'A_CANCELLED' AND x.ts > p.anchor AND x.ts <= p.anchor + {H})"),
    "approved": (None, "EXISTS (SELECT 1 FROM o x WHERE x.c = p.c AND x.a = 'A_APPROVED' AND x.ts > p.anchor)"),
    "quiet_14d": (14 * D, "NOT EXISTS (SELECT 1 FROM o x WHERE x.c = p.c AND x.ts > p.anchor AND x.ts <= p.anchor + {H})"),
}

def report(segment, outcome, base):
    pop = ENTRY[base] if base else "SELECT c, min(ts) AS t FROM o GROUP BY c"
    h, cond = OUTCOME[outcome]
    cond = cond.replace("{H}", str(h))
    pending = f"p.anchor + {h} > {END}" if h else "false"
    rows = con.execute(f"""
        WITH pop AS ({pop}), seg AS ({ENTRY[segment]}),
        p AS (SELECT pop.c, seg.c IS NOT NULL AS member, coalesce(seg.t, pop.t) AS anchor
              FROM pop LEFT JOIN seg ON seg.c = pop.c)
        SELECT member, count(*), count(*) FILTER ({pending}),
               count(*) FILTER (NOT ({pending}) AND {cond})
        FROM p GROUP BY member""").fetchall()
    out = {}
    for member, units, pend, reached in rows:
        out["members" if member else "non_members"] = {
            "units": units, "pending": pend, "decided": units - pend, "reached": reached}
    return out

cases = [("completion_repeated", "cancelled_30d", None),
         ("large_request", "approved", "submitted"),
         ("completion_repeated", "quiet_14d", "submitted")]
print(json.dumps({f"{s}/{o}/{b or ''}": report(s, o, b) for s, o, b in cases}))
