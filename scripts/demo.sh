#!/usr/bin/env bash
# The demo: generate the synthetic shapes world, train a CPU-sized IMRAM on it, evaluate on the
# test split, and query it. Usage: scripts/demo.sh path/to/imram [output dir]
# Settings can be overridden through the environment (DEMO_STEPS, DEMO_MODE, ...).
set -euo pipefail
IMRAM=${1:?usage: demo.sh IMRAM_BINARY [OUT_DIR]}
OUT=${2:-demo}
DATA=$OUT/data
RUN=$OUT/run
MODE=${DEMO_MODE:-text}
STEPS=${DEMO_STEPS:-2}
EPOCHS=${DEMO_EPOCHS:-2}
SEED=${DEMO_SEED:-7}

start=$(date +%s)
echo "== 1/4 generating the synthetic shapes world in $DATA"
rm -rf "$DATA" "$RUN"
"$IMRAM" synth --out "$DATA" --seed "$SEED" --train 4000 --dev 500 --test 500 --regions 16 --feat-dim 256

echo "== 2/4 training $MODE-IMRAM (K=$STEPS, d=128) for $EPOCHS epochs into $RUN"
"$IMRAM" train --data "$DATA" --out "$RUN" --mode "$MODE" --steps "$STEPS" --embed-size 128 --word-dim 128 \
  --batch-size 64 --lr 1e-3 --epochs "$EPOCHS" --lr-update 100 --val-images 200 --seed "$SEED" --log-every 20

echo "== 3/4 evaluating on the test split (500 images, 2500 captions)"
"$IMRAM" eval --model "$RUN/best" --data "$DATA" --split test --save-json "$OUT/eval.json"

echo "== 4/4 three text queries against the 500 test images (* = the image the caption was written for)"
for caption in 0 1234 2480; do
  image=$((caption / 5))
  query=$(sed -n "$((caption + 1))p" "$DATA/test_caps.txt")
  "$IMRAM" search --model "$RUN/best" --data "$DATA" --split test --query "$query" --top 3 --mark "$image" --cache "$OUT/cache"
done

elapsed=$(( $(date +%s) - start ))
echo
echo "generation + training + evaluation + queries took ${elapsed}s"
echo "the model is in $RUN/best; try:"
echo "  $IMRAM search --model $RUN/best --data $DATA --query \"a small red circle left of a blue square\""
echo "  $IMRAM search --model $RUN/best --data $DATA --image 3"
echo "  $IMRAM eval --model $RUN/best --data $DATA --split test"
cat "$OUT/eval.json"
echo
echo "search it in a web browser (http://127.0.0.1:8080/; or ./run serve):"
echo "  $IMRAM serve --model $RUN/best --data $DATA --split test --cache $OUT/cache"
