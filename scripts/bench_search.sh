#!/usr/bin/env bash
# Two-stage search benchmarks of docs/search.md, one JSON line each (imram bench search): text-IMRAM
# K=3, R=36, D=2048, shortlist 100 without a cascade (the table's configuration; `imram bench search`
# alone runs the default search's lists), 2 threads. Usage: scripts/bench_search.sh IMRAM [SIZES...]
# SIZES are IMAGESxEMBED (default: 1000x1024 100000x1024 1000000x256). Large galleries are built
# on disk under ${BENCH_DIR:-/tmp} (100,000 x 1024: about 7.4 GB; 1,000,000 x 256: about 18 GB).
# BENCH_FLAGS adds options to every run, e.g. BENCH_FLAGS=--memory-halves (three times the store).
set -euo pipefail
IMRAM=${1:?usage: bench_search.sh IMRAM [IMAGESxEMBED ...]}
shift
SIZES=("$@")
[[ ${#SIZES[@]} -eq 0 ]] && SIZES=(1000x1024 100000x1024 1000000x256)
echo "# $(uptime)" >&2
"$IMRAM" doctor --json 2>/dev/null | head -c 400 >&2 || true
echo >&2
for size in "${SIZES[@]}"; do
  images=${size%x*}
  embed=${size#*x}
  dir=${BENCH_DIR:-/tmp}/imram-bench-search-$images-$embed
  "$IMRAM" --threads 2 bench search --images "$images" --embed "$embed" --regions 36 --steps 3 \
    --shortlist 100 --prefilter 0 --queries 200 --exhaustive-queries 3 --dir "$dir" --quiet ${BENCH_FLAGS:-}
  rm -rf "$dir"
done
