"""Peer for `sequin mine`: the `prefixspan` package (PyPI) on an SPMF file of single-item
itemsets. Prints `count seconds` (mining only, parse excluded)."""
import sys
import time

from prefixspan import PrefixSpan

path, rel = sys.argv[1], float(sys.argv[2])
db = []
with open(path) as f:
    for line in f:
        items = [int(t) for t in line.split() if t not in ("-1", "-2")]
        if items:
            db.append(items)
minsup = max(1, -(-int(round(rel * len(db) * 1e9)) // int(1e9)))  # ceil(rel * n)
ps = PrefixSpan(db)
ps.maxlen = 10**6
t0 = time.perf_counter()
n = len(ps.frequent(minsup))
print(n, time.perf_counter() - t0)
