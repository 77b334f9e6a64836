#!/usr/bin/env bash
# The performance table of docs/performance.md, in one run: the engine against the literal transcription
# of the authors' algorithm (same process, same machine), at the issue's settings
# (d = 1024, R = 36, D = 2048, Flickr30K caption lengths). Usage: scripts/bench.sh IMRAM [CAPS]
set -euo pipefail
IMRAM=${1:?usage: bench.sh IMRAM_BINARY [CAPTIONS_FILE]}
CAPS=${2:-tests/testdata/captions/f30k_test_caps.txt}
THREADS=${THREADS:-2}
"$IMRAM" --threads "$THREADS" doctor --json
"$IMRAM" --threads "$THREADS" bench score --mode text --steps 3 --images 100 --embed 1024 --regions 36 --caption-lengths "$CAPS" --json
"$IMRAM" --threads "$THREADS" bench score --mode image --steps 3 --images 100 --embed 1024 --regions 36 --caption-lengths "$CAPS" --json
"$IMRAM" --threads "$THREADS" bench score --mode text --steps 1 --images 200 --embed 1024 --regions 36 --caption-lengths "$CAPS" --json
"$IMRAM" --threads "$THREADS" bench train --mode full --steps 3 --batch-size 32 --embed 1024 --regions 36 --iterations 2 --json
# Again at the end: a neighbour taking a core during the run shows up as a lower figure here.
"$IMRAM" --threads "$THREADS" doctor --json
