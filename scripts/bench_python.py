#!/usr/bin/python3
"""`Model.score` from Python against `imram score` on the same inputs, in the same run.

    PYTHONPATH=build/python /usr/bin/python3 scripts/bench_python.py [--images 40] [--captions 500] [--rounds 3]

A random text-IMRAM model (K=3, d=1024, 36 regions of 2048 features, the authors' Flickr30K
vocabulary, bidirectional GRU) is written as a reference weight directory and imported with
`imram import`; the captions are the first of tests/testdata/captions/f30k_test_caps.txt. Each
round runs both as whole processes (start, model load, reading the inputs, scoring, writing the
matrix), alternating which goes first, with the same thread count; then, in this process, the
score call alone with a second Python thread counting while it runs (the GIL released). Prints
one JSON line: the median seconds of each, their ratio and the other thread's progress. Leave the
machine otherwise idle.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

parser = argparse.ArgumentParser()
parser.add_argument("--images", type=int, default=40)
parser.add_argument("--captions", type=int, default=500)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--binary", default=str(ROOT / "build" / "imram"))
args = parser.parse_args()

import imram  # noqa: E402  (after the arguments: --help needs no module)

d, regions, img_dim, word_dim = 1024, 36, 2048, 300
vocab_path = ROOT / "tests" / "testdata" / "vocab" / "f30k_precomp_vocab.json"
vocab_size = len(json.loads(vocab_path.read_text())["word2idx"])
rng = np.random.default_rng(7)


def uniform(*shape, scale):
    return rng.uniform(-scale, scale, shape).astype(np.float32)


with tempfile.TemporaryDirectory() as scratch:
    scratch = Path(scratch)
    reference = scratch / "reference"
    (reference / "weights").mkdir(parents=True)
    config = {"embed_size": d, "word_dim": word_dim, "img_dim": img_dim, "vocab_size": vocab_size, "num_layers": 1,
              "bi_gru": True, "raw_feature_norm": "clipped_l2norm", "lambda_softmax": 9.0, "iteration_step": 3,
              "model_mode": "text_IMRAM", "no_IMRAM_norm": True, "no_imgnorm": False, "no_txtnorm": False,
              "precomp_enc_type": "basic", "margin": 0.2, "max_violation": True}
    (reference / "config.json").write_text(json.dumps(config))
    weights = {"img_enc.fc_local.weight": uniform(d, img_dim, scale=0.03), "img_enc.fc_local.bias": uniform(d, scale=0.01),
               "txt_enc.embed.weight": uniform(vocab_size, word_dim, scale=0.1)}
    for suffix in ["_l0", "_l0_reverse"]:
        weights[f"txt_enc.rnn.weight_ih{suffix}"] = uniform(3 * d, word_dim, scale=0.03)
        weights[f"txt_enc.rnn.weight_hh{suffix}"] = uniform(3 * d, d, scale=0.03)
        weights[f"txt_enc.rnn.bias_ih{suffix}"] = uniform(3 * d, scale=0.03)
        weights[f"txt_enc.rnn.bias_hh{suffix}"] = uniform(3 * d, scale=0.03)
    for layer in ["linear_t2i", "gate_t2i", "linear_i2t", "gate_i2t"]:
        weights[f"{layer}.weight"] = uniform(d, 2 * d, scale=0.02)
        weights[f"{layer}.bias"] = uniform(d, scale=0.02)
    for name, value in weights.items():
        np.save(reference / "weights" / f"{name}.npy", value)
    model_dir = scratch / "model"
    subprocess.run([args.binary, "import", reference, "--vocab", vocab_path, "--out", model_dir], check=True,
                   capture_output=True)
    images = rng.standard_normal((args.images, regions, img_dim)).astype(np.float32)
    np.save(scratch / "ims.npy", images)
    captions = (ROOT / "tests" / "testdata" / "captions" / "f30k_test_caps.txt").read_text().splitlines()[: args.captions]
    (scratch / "caps.txt").write_text("\n".join(captions) + "\n")

    cli = [args.binary, "score", "--threads", str(args.threads), "--model", str(model_dir), "--images",
           str(scratch / "ims.npy"), "--captions", str(scratch / "caps.txt"), "--out", str(scratch / "cli.npy"),
           "--dtype", "float32"]
    script = ("import sys, numpy as np, imram\n"
              "model = imram.Model(sys.argv[1], threads=int(sys.argv[2]))\n"
              "captions = open(sys.argv[4]).read().splitlines()\n"
              "np.save(sys.argv[5], model.score(np.load(sys.argv[3], mmap_mode='r'), captions))\n")
    python = [sys.executable, "-c", script, str(model_dir), str(args.threads), str(scratch / "ims.npy"),
              str(scratch / "caps.txt"), str(scratch / "py.npy")]

    def timed(command):
        begin = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=os.environ.copy())
        return time.perf_counter() - begin

    cli_s, python_s = [], []
    for round_ in range(args.rounds):
        order = [(cli, cli_s), (python, python_s)]
        for command, times in order if round_ % 2 == 0 else reversed(order):
            times.append(timed(command))
    difference = float(np.abs(np.load(scratch / "cli.npy") - np.load(scratch / "py.npy")).max())

    model = imram.Model(str(model_dir), threads=args.threads)
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    begin = time.perf_counter()
    model.score(images, captions)
    call_s = time.perf_counter() - begin
    stop.set()
    counter.join()
    inside = sum(begin < t < begin + call_s for t in ticks)

print(json.dumps({
    "images": args.images, "captions": args.captions, "pairs": args.images * args.captions, "threads": args.threads,
    "cli_s": [round(t, 3) for t in cli_s], "python_s": [round(t, 3) for t in python_s],
    "cli_median_s": round(statistics.median(cli_s), 3), "python_median_s": round(statistics.median(python_s), 3),
    "python_over_cli": round(statistics.median(python_s) / statistics.median(cli_s), 4),
    "max_abs_difference": difference, "score_call_s": round(call_s, 3),
    "other_thread_ticks_during_score": inside,
}))
