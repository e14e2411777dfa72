"""Independent cross-check of tests/real/bpic2012.seg in DuckDB SQL.

usage: bpic2012_check.py EVENTS_CSV AS_OF (RFC 3339)
Prints JSON {segment: sorted case ids}. Events are ordered by (timestamp, file row), as
Sequin orders them (time, then arrival).
"""
import datetime, json, sys
import duckdb

path = sys.argv[1]
as_of = round(datetime.datetime.fromisoformat(sys.argv[2].replace("Z", "+00:00")).timestamp() * 1000)
con = duckdb.connect()
con.execute("SET threads=1")  # keeps the scan in file order for row numbers
con.execute(f"""
CREATE TABLE t AS
SELECT row_number() OVER () AS rn, case_id::VARCHAR AS c, activity AS a, lifecycle AS l,
       epoch_ms(timestamp::TIMESTAMP) AS ts, amount_req
FROM read_csv('{path}', header=true, all_varchar=true)""")
con.execute(f"""
CREATE TABLE e AS SELECT row_number() OVER (ORDER BY c, ts, rn) AS o, * FROM t WHERE ts <= {as_of}""")

def cases(sql):
    return sorted(r[0] for r in con.execute(sql).fetchall())

H, D = 3600 * 1000, 24 * 3600 * 1000
out = {
    # For each lead event, the first decline after it is the closest one.
    "declined_soon_after_lead": cases(f"""
        SELECT DISTINCT l.c FROM e l
        JOIN LATERAL (SELECT min(o) AS nx FROM e d WHERE d.c = l.c AND d.o > l.o AND d.a = 'A_DECLINED') n ON true
        JOIN e d ON d.o = n.nx
        WHERE l.a = 'W_Afhandelen leads' AND d.ts - l.ts <= {H}"""),
    "cancelled_without_offer_in_10d": cases(f"""
        SELECT DISTINCT s.c FROM e s
        WHERE s.a = 'A_SUBMITTED' AND s.ts + {10 * D} <= {as_of}
          AND EXISTS (SELECT 1 FROM e x WHERE x.c = s.c AND x.a = 'A_CANCELLED')
          AND NOT EXISTS (SELECT 1 FROM e x WHERE x.c = s.c AND x.o > s.o AND x.a = 'O_SENT'
                          AND x.ts <= s.ts + {10 * D})"""),
    "completion_repeated": cases("""
        SELECT c FROM e WHERE a = 'W_Completeren aanvraag' AND l = 'COMPLETE'
        GROUP BY c HAVING count(*) >= 3"""),
    "large_request_declined": cases("""
        SELECT DISTINCT s.c FROM e s JOIN e d ON d.c = s.c AND d.o > s.o
        WHERE s.a = 'A_SUBMITTED' AND s.amount_req::BIGINT >= 20000 AND d.a = 'A_DECLINED'"""),
    # An offer sent, then a cancellation, with no acceptance between them.
    "offer_then_cancel_no_accept": cases("""
        SELECT DISTINCT s.c FROM e s JOIN e x ON x.c = s.c AND x.o > s.o
        WHERE s.a = 'O_SENT' AND x.a = 'A_CANCELLED'
          AND NOT EXISTS (SELECT 1 FROM e y WHERE y.c = s.c AND y.o > s.o AND y.o < x.o
                          AND y.a = 'O_ACCEPTED')"""),
}
print(json.dumps(out))
