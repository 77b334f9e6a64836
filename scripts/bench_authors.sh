#!/usr/bin/env bash
# Same-run comparison with the authors' code: for each setting, `imram bench score` and then the
# authors' own evaluation function (evaluation.shard_xattn of github.com/HuiChen24/IMRAM, run by
# Debian's python3-torch on the CPU) on random embeddings of the same sizes, the same thread
# count and caption lengths drawn from the same caption file. Prints both rates and their ratio.
#
#   scripts/bench_authors.sh AUTHORS_CHECKOUT [IMRAM_BINARY] [CAPTIONS_FILE]
#
# AUTHORS_CHECKOUT is a checkout of their repository; nothing of it is copied here. Their code
# expects CUDA and imports torchvision, nltk and PIL, none of which scoring uses: the harness
# below makes .cuda() a no-op and stubs those modules. Needs python3-torch and python3-numpy
# (apt-get). Leave the machine otherwise idle: `uptime` is printed before and after.
set -euo pipefail
AUTHORS=${1:?usage: bench_authors.sh AUTHORS_CHECKOUT [IMRAM_BINARY] [CAPTIONS_FILE]}
IMRAM=${2:-build/imram}
CAPS=${3:-tests/testdata/captions/f30k_test_caps.txt}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-/usr/bin/python3}
[[ -f "$AUTHORS/evaluation.py" && -f "$AUTHORS/model.py" ]] || { echo "bench_authors: $AUTHORS is not a checkout of HuiChen24/IMRAM" >&2; exit 2; }
"$PYTHON" -c "import torch, numpy" 2>/dev/null || { echo "bench_authors: $PYTHON lacks torch/numpy (apt-get install python3-torch python3-numpy)" >&2; exit 2; }

HARNESS=$(mktemp --suffix=.py)
trap 'rm -f "$HARNESS"' EXIT
cat >"$HARNESS" <<'PY'
import json, random, sys, time, types

authors, mode, steps, images, captions, threads, caps = sys.argv[1:8]
steps, images, captions, threads = int(steps), int(images), int(captions), int(threads)
# Scoring needs none of these; their modules import them at the top.
for name in ["torchvision", "torchvision.models", "torchvision.transforms", "nltk", "PIL", "PIL.Image"]:
    sys.modules[name] = types.ModuleType(name)
sys.modules["PIL"].Image = sys.modules["PIL.Image"]
import numpy as np
import torch
torch.Tensor.cuda = lambda self, *args, **kwargs: self
torch.nn.Module.cuda = lambda self, *args, **kwargs: self
torch.set_num_threads(threads)
sys.path.insert(0, authors)
import opts, evaluation
from model import SCAN

sys.argv = ["train_gpus.py", "--data_name", "f30k_precomp", "--max_violation", "--bi_gru", "--agg_func=Mean",
            "--lambda_softmax=9", "--model_mode", mode + "_IMRAM", "--iteration_step", str(steps), "--no_IMRAM_norm"]
opt = opts.parse_opt()
opt.vocab_size = 8481
model = SCAN(opt)
model.eval()

rng = random.Random(1)
sample = [len(line.split()) + 2 for line in open(caps, encoding="utf-8") if line.strip()]
lengths = [rng.choice(sample) for _ in range(captions)]
d, regions = opt.embed_size, 36
def unit(*shape):
    x = torch.randn(*shape)
    return (x / x.norm(dim=-1, keepdim=True)).numpy()
img_embs = unit(images, regions, d)
img_fc = img_embs.mean(1)
cap_embs = unit(captions, max(lengths), d)
for j, n in enumerate(lengths):
    cap_embs[j, n:] = 0
cap_ht = unit(captions, d)
with torch.no_grad():  # as evaluation.evalrank
    start = time.perf_counter()
    sims = evaluation.shard_xattn(model, img_fc, img_embs, cap_ht, cap_embs, lengths, opt, shard_size=128)
    seconds = time.perf_counter() - start
assert sims.shape == (images, captions)
print(json.dumps({"authors": mode, "steps": steps, "images": images, "captions": captions, "threads": threads,
                  "torch": torch.__version__, "mean_length": sum(lengths) / len(lengths),
                  "seconds": seconds, "pairs_per_s": images * captions / seconds}))
PY

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $THREADS threads"
echo "load before: $(uptime)"
"$IMRAM" --threads "$THREADS" doctor --json
summary=()
# mode steps images (captions: 5 per image), the sizes of scripts/bench.sh, for both. The
# authors' part takes a few minutes per setting (about 100 s for text K=3 on a 2-core machine).
for setting in "text 3 100" "image 3 100" "text 1 200"; do
  read -r mode steps images <<<"$setting"
  engine=$("$IMRAM" --threads "$THREADS" bench score --mode "$mode" --steps "$steps" --images "$images" \
    --embed 1024 --regions 36 --caption-lengths "$CAPS" --json | tail -n 1)
  echo "$engine"
  authors=$("$PYTHON" "$HARNESS" "$AUTHORS" "$mode" "$steps" "$images" "$((5 * images))" "$THREADS" "$CAPS" | tail -n 1)
  echo "$authors"
  summary+=("$("$PYTHON" - "$engine" "$authors" <<'PY'
import json, sys
engine, authors = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratio = engine["pairs_per_s"] / authors["pairs_per_s"]
oracle = engine.get("baseline_pairs_per_s") or 0
print(f'{engine["mode"]}-IMRAM K={engine["steps"]}: authors {authors["pairs_per_s"]:,.0f} pairs/s, '
      f'oracle {oracle:,.0f}, engine {engine["pairs_per_s"]:,.0f}: {ratio:.1f}x the authors')
PY
)")
done
"$IMRAM" --threads "$THREADS" doctor --json
echo "load after: $(uptime)"
printf '%s\n' "${summary[@]}"
