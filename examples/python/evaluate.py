"""Load the authors' checkpoint, score a dataset split and print R@K: the Python form of
`imram import` + `imram eval`.

    python examples/python/evaluate.py model_best.pth.tar f30k_precomp_vocab.json DATA_DIR [SPLIT]

DATA_DIR holds {split}_ims.npy and {split}_caps.txt (the precomputed layout, or `imram synth`'s).
"""

import sys
import tempfile

import numpy as np

import imram

checkpoint, vocab, data = sys.argv[1:4]
split = sys.argv[4] if len(sys.argv) > 4 else "test"

with tempfile.TemporaryDirectory() as scratch:
    model = imram.Model.import_checkpoint(checkpoint, vocab=vocab, out=f"{scratch}/model")
    config = model.config
    print(f"{config['mode']}-IMRAM, K={config['iteration_steps']}, d={config['embed_size']}, {imram.threads()} threads")

    # The whole protocol in one call, as `imram eval`:
    result = imram.evaluate(model, data, split, progress=True, return_sims=True)
    print(f"image->text R@1/5/10 {result['i2t']['r1']:.1f} {result['i2t']['r5']:.1f} {result['i2t']['r10']:.1f}")
    print(f"text->image R@1/5/10 {result['t2i']['r1']:.1f} {result['t2i']['r5']:.1f} {result['t2i']['r10']:.1f}")
    print(f"rsum {result['rsum']:.1f} ({result['seconds']:.1f} s)")

    # The same by hand: the features and captions as arrays and text, scored, then the metrics.
    images = np.load(f"{data}/{split}_ims.npy", mmap_mode="r")[:100]
    with open(f"{data}/{split}_caps.txt", encoding="utf-8") as f:
        captions = f.read().splitlines()[: 5 * len(images)]
    sims = model.score(images, captions)
    print("first 100 images:", {key: round(value, 1) for key, value in imram.metrics(sims)["t2i"].items()})
