#!/usr/bin/env python3
"""First lists of a text query from the region centroids (PLAID's candidate generation) against
the global head, on an index with codes (docs/search.md#candidates-from-centroids).

    PYTHONPATH=<the imram module> python3 scripts/centroid_candidates.py INDEX OUT.json

For 200 of the index's own captions (every 500th), exhaustive IMRAM's top 10
(imram.Index.search with shortlist 0, cached beside OUT) is the truth. Each first list is judged
at equal lengths by the share of queries whose whole top 10 it holds and the mean share of the
top 10 it holds:
- head: the images by global-embedding product (image_globals.bin . caption_globals.bin);
- centroids: every image by its centroid interaction, the sum over the query's words of the best
  product of the word with a centroid of the image's regions (ColBERT's MaxSim on the codes);
- union: the head and centroid interaction taken alternately, distinct images, to the length;
- plaid8: the images of the inverted lists of each word's 8 nearest centroids, by interaction;
- head+plaid8: the head and plaid8 taken alternately, likewise.
plaid_candidates: how many images the inverted lists of each word's p nearest centroids name,
and how often they hold the top 10."""
import json
import os
import sys

import imram
import numpy as np

idx_dir = sys.argv[1]
out = sys.argv[2]
man = json.load(open(f"{idx_dir}/manifest.json"))
n_img, R, d = man["images"], man["regions"], man["embed_size"]
captions = open(f"{idx_dir}/captions.txt").read().split("\n")[: man["captions"]]
sample = list(range(0, man["captions"], 500))[:200]
texts = [captions[j] for j in sample]

imram.set_threads(2)
truth_file = out + ".truth.npy"
if os.path.exists(truth_file):
    truth = np.load(truth_file)
else:
    truth = np.asarray(imram.Index(idx_dir).search(texts, k=10, shortlist=0).ids)  # exhaustive IMRAM
    np.save(truth_file, truth)

g = man["global_dim"]
img_glob = np.fromfile(f"{idx_dir}/image_globals.bin", dtype=np.float32).reshape(n_img, g)
cap_glob = np.memmap(f"{idx_dir}/caption_globals.bin", dtype=np.float32, mode="r").reshape(-1, g)
offsets = np.fromfile(f"{idx_dir}/word_offsets.bin", dtype=np.int64)
words = np.memmap(f"{idx_dir}/words.bin", dtype=np.float16, mode="r").reshape(-1, d)
codes = np.fromfile(f"{idx_dir}/region_codes.bin", dtype=np.int32).reshape(n_img, R)
codebook = np.fromfile(f"{idx_dir}/region_codebook.bin", dtype=np.float32).reshape(-1, d)
C = codebook.shape[0]
# images whose regions fall in each centroid: PLAID's inverted lists
lists = [[] for _ in range(C)]
for i in range(n_img):
    for c in set(codes[i].tolist()):
        lists[c].append(i)
lists = [np.array(members, dtype=np.int64) for members in lists]


def halves(first, second, length):
    """The first `length` distinct images taken alternately from two rankings."""
    taken = []
    seen = set()
    for pair in zip(first, second):
        for image in pair:
            if image not in seen and len(taken) < length:
                seen.add(image)
                taken.append(image)
        if len(taken) == length:
            break
    return seen


lengths = [50, 100, 200, 500, 1000, 2000]
rows = {n: {L: [] for L in lengths} for n in ("head", "centroids", "union", "plaid8", "head+plaid8")}
plaid = {p: {"size": [], "held": []} for p in (1, 2, 4, 8)}
for q, j in enumerate(sample):
    top10 = set(truth[q].tolist())
    head_rank = np.argsort(-(img_glob @ cap_glob[j])).tolist()
    w = np.asarray(words[offsets[j] : offsets[j + 1]], dtype=np.float32)
    table = w @ codebook.T  # words x centroids
    # centroid interaction of every image: sum over words of the best region's centroid product
    cent_score = table[:, codes].max(axis=2).sum(axis=0)  # (words x images x regions) -> images
    cent_rank = np.argsort(-cent_score).tolist()
    nearest = np.argsort(-table, axis=1)
    for p in plaid:
        cand = np.unique(np.concatenate([lists[c] for c in np.unique(nearest[:, :p])]))
        plaid[p]["size"].append(len(cand))
        plaid[p]["held"].append(len(top10 & set(cand.tolist())))
    plaid_rank = cand[np.argsort(-cent_score[cand])].tolist()  # p = 8, the last
    for L in lengths:
        for name, chosen in (
            ("head", set(head_rank[:L])),
            ("centroids", set(cent_rank[:L])),
            ("union", halves(head_rank, cent_rank, L)),
            ("plaid8", set(plaid_rank[:L])),
            ("head+plaid8", halves(head_rank, plaid_rank, L)),
        ):
            rows[name][L].append(len(top10 & chosen))

res = {"queries": len(sample), "centroids": C, "lists": {}}
for name in rows:
    res["lists"][name] = {
        str(L): {"all_top10": float(np.mean(np.array(v) == 10)), "mean_top10_held": float(np.mean(v)) / 10}
        for L, v in rows[name].items()
    }
res["plaid_candidates"] = {
    str(p): {
        "mean_size": float(np.mean(v["size"])),
        "all_top10": float(np.mean(np.array(v["held"]) == 10)),
        "mean_top10_held": float(np.mean(v["held"])) / 10,
    }
    for p, v in plaid.items()
}
json.dump(res, open(out, "w"), indent=1)
print(json.dumps(res, indent=1))
