#!/usr/bin/env bash
# Sequential-pattern mining benchmark (issue 6): `sequin mine --spmf` against the
# `prefixspan` package (PyPI) on the SPMF benchmark files, same relative supports, side by
# side in one run. Both must report the same number of patterns; times are mining only
# (parsing excluded on both sides), best of 3.
#
# usage: bench/mine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import prefixspan" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/requirements.txt
fi
cargo build --release -q
BIN=target/release/sequin
SPMF=../shared/data/spmf
printf '%-10s %8s %10s %10s %12s %12s %8s\n' file support sequin peer "sequin s" "peer s" speedup
for case in "SIGN 0.5" "SIGN 0.3" "SIGN 0.2" "BMS1_spmf 0.002" "BMS1_spmf 0.001" "BMS1_spmf 0.0007"; do
  set -- $case
  best_s=; best_p=
  for i in 1 2 3; do
    line=$($BIN mine --spmf "$SPMF/$1.txt" --min-support "$2" 2>&1 >/dev/null | tail -1)
    n_s=$(echo "$line" | awk '{print $1}')
    t_s=$(echo "$line" | sed -E 's/.*mined ([0-9.]+)s.*/\1/')
    read -r n_p t_p < <(bench/.venv/bin/python bench/mine_peer.py "$SPMF/$1.txt" "$2")
    best_s=$(printf '%s\n' $best_s $t_s | sort -g | head -1)
    best_p=$(printf '%s\n' $best_p $t_p | sort -g | head -1)
  done
  [ "$n_s" = "$n_p" ] || echo "COUNT MISMATCH on $1 at $2: sequin $n_s, peer $n_p"
  printf '%-10s %8s %10s %10s %12.4f %12.4f %7.0fx\n' "$1" "$2" "$n_s" "$n_p" "$best_s" "$best_p" \
    "$(echo "$best_p / ($best_s + 0.00005)" | bc -l)"
done
