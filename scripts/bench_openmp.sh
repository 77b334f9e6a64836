#!/usr/bin/env bash
# imram's own OpenMP waiting default (no variable set: the binary sets GOMP_SPINCOUNT=10000 for
# itself) against libgomp's default (GOMP_SPINCOUNT=300000, given explicitly), alternating in one
# run: idle, then beside one busy LibTorch process that keeps libgomp's default.
# Usage: [IDLE_ONLY=1] scripts/bench_openmp.sh [rounds]   (docs/performance.md, "OpenMP waiting")
set -euo pipefail
IMRAM=${IMRAM:-build/imram}
ROUNDS=${1:-2}
TRAIN=(bench train --mode text --steps 2 --embed 128 --regions 16 --batch-size 64 --iterations 10 --no-baseline --json)
SCORE=(bench score --mode text --steps 1 --embed 256 --images 400 --baseline-pairs 0 --json)

run() {  # run SETTING ARGS...: SETTING is "imram" (nothing set) or a spin count
  local setting=$1
  shift
  if [[ $setting == imram ]]; then
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$IMRAM" "$@"
  else
    env -u OMP_WAIT_POLICY GOMP_SPINCOUNT="$setting" "$IMRAM" "$@"
  fi
}

measure() {  # measure LABEL
  for round in $(seq "$ROUNDS"); do
    for setting in imram 300000; do
      echo "{\"label\":\"$1\",\"round\":$round,\"setting\":\"$setting\",\"train\":$(run "$setting" "${TRAIN[@]}"),\"score\":$(run "$setting" "${SCORE[@]}")}"
    done
  done
}

measure idle
[[ ${IDLE_ONLY:-0} == 1 ]] && exit 0
(while true; do run 300000 bench score --mode text --steps 1 --embed 256 --images 200 > /dev/null; done) &
neighbour=$!
trap 'kill $neighbour 2>/dev/null; wait 2>/dev/null' EXIT
sleep 2
measure busy
