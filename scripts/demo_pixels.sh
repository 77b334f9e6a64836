#!/usr/bin/env bash
# The pixels demo (DEMO_PIXELS=1 ./run demo): the photos path end to end on pictures we make.
# The synthetic world's scenes are painted to PNG files, a small fixed backbone (random
# convolutions, tests/testdata/backbones/grid_d256_g4.pt: 4 x 4 = 16 regions of 256 features, the
# size of the demo's synthetic features)
# turns them into region features, and IMRAM is trained, evaluated, indexed and queried on those
# features exactly as on the generator's own. A pipeline test, not a claim about real photos
# (docs/features.md has its figures). Usage: scripts/demo_pixels.sh path/to/imram [output dir]
set -euo pipefail
IMRAM=${1:?usage: demo_pixels.sh IMRAM_BINARY [OUT_DIR]}
OUT=${2:-demo-pixels}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BACKBONE=${DEMO_BACKBONE:-$ROOT/tests/testdata/backbones/grid_d256_g4.pt}
SIZE=${DEMO_PICTURE_SIZE:-192}
EPOCHS=${DEMO_EPOCHS:-2}
SEED=${DEMO_SEED:-7}
SHORTLIST=${DEMO_SHORTLIST:-100}
SCENES=$OUT/scenes
DATA=$OUT/data
RUN=$OUT/run
INDEX=$OUT/index

start=$(date +%s)
echo "== 1/6 painting the shapes world's scenes: $SCENES/pictures/{train,dev,test}/*.png (${SIZE}x${SIZE})"
rm -rf "$SCENES" "$DATA" "$RUN" "$INDEX"
"$IMRAM" synth --out "$SCENES" --seed "$SEED" --train 4000 --dev 500 --test 500 --regions 16 --feat-dim 16 \
  --render --render-size "$SIZE"

echo "== 2/6 region features of the pictures with $BACKBONE into $DATA"
for split in train dev test; do
  "$IMRAM" features --backbone "$BACKBONE" --images "$SCENES/pictures/$split" --out "$DATA" --split "$split" \
    --size "$SIZE"
  cp "$SCENES/${split}_caps.txt" "$DATA/"
done
cp "$SCENES/vocab.json" "$DATA/"

echo "== 3/6 training text-IMRAM (K=2, d=128) for $EPOCHS epochs on the pictures' features into $RUN"
"$IMRAM" train --data "$DATA" --out "$RUN" --mode text --steps 2 --embed-size 128 --word-dim 128 \
  --batch-size 64 --lr 1e-3 --epochs "$EPOCHS" --lr-update 100 --val-images 200 --seed "$SEED" --log-every 20

echo "== 4/6 fitting the global head and indexing the 500 test pictures into $INDEX"
"$IMRAM" train-global --model "$RUN/best" --data "$DATA" --out "$RUN/global"
"$IMRAM" index build --model "$RUN/global" --data "$DATA" --split test --out "$INDEX"

echo "== 5/6 evaluating on the test pictures: exhaustive IMRAM, two-stage (N=$SHORTLIST), stage 1 alone"
"$IMRAM" eval --index "$INDEX" --shortlist "$SHORTLIST" --save-json "$OUT/eval.json"

echo "== 6/6 a text query against the test pictures"
"$IMRAM" search --index "$INDEX" --shortlist "$SHORTLIST" --query "$(sed -n 1p "$DATA/test_caps.txt")" --top 3 --mark 0

echo
echo "painting + features + training + indexing + evaluation took $(( $(date +%s) - start ))s"
echo "see the pictures and where attention went: $IMRAM serve --index $INDEX"
