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
- union: half of each, grown to the length;
- plaid8: the images of the inverted lists of each word's 8 nearest centroids, by interaction;
- head+plaid8: half of the head's list and half of plaid8's.
plaid_candidates: how many images the inverted lists of each word's p nearest centroids name,
and how often they hold the top 10."""
import json
import os
import sys
import time

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
index = imram.Index(idx_dir)
t = time.time()
if os.path.exists(out + ".truth.npy"):
    truth = np.load(out + ".truth.npy")
else:
    truth = np.asarray(index.search(texts, k=10, shortlist=0).ids)  # exhaustive IMRAM
    np.save(out + ".truth.npy", truth)
exhaustive_s = time.time() - t

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
lists = [np.array(l, dtype=np.int64) for l in lists]

lengths = [50, 100, 200, 500, 1000, 2000]
rows = {n: {L: [] for L in lengths} for n in ("head", "centroids", "union", "plaid8", "head+plaid8")}
plaid = {p: {"size": [], "held": []} for p in (1, 2, 4, 8)}
for q, j in enumerate(sample):
    top10 = set(truth[q].tolist())
    head_rank = np.argsort(-(img_glob @ cap_glob[j]))
    w = np.asarray(words[offsets[j] : offsets[j + 1]], dtype=np.float32)
    table = w @ codebook.T  # words x centroids
    # centroid interaction of every image: sum over words of the best region's centroid product
    inter = table[:, codes]  # words x images x regions
    cent_score = inter.max(axis=2).sum(axis=0)
    cent_rank = np.argsort(-cent_score)
    near8 = np.argsort(-table, axis=1)[:, :8]
    cand8 = np.unique(np.concatenate([lists[c] for c in np.unique(near8)]))
    plaid_rank = cand8[np.argsort(-cent_score[cand8])]
    for L in lengths:
        pl = set(plaid_rank[:L].tolist())
        hp = set(head_rank[: L // 2].tolist()) | set(plaid_rank[: L // 2].tolist())
        k = L // 2
        while len(hp) < L and k < n_img:
            hp.add(int(head_rank[k]))
            if k < len(plaid_rank): hp.add(int(plaid_rank[k]))
            k += 1
        rows["plaid8"][L].append(len(top10 & pl))
        rows["head+plaid8"][L].append(len(top10 & hp))
        h, c = set(head_rank[:L].tolist()), set(cent_rank[:L].tolist())
        u = set(head_rank[: L // 2].tolist()) | set(cent_rank[: L // 2].tolist())
        k = L // 2
        while len(u) < L and k < n_img:  # the union grown to L images, half from each ranking
            u.add(int(head_rank[k])); u.add(int(cent_rank[k])); k += 1
        for name, s in (("head", h), ("centroids", c), ("union", u)):
            rows[name][L].append(len(top10 & s))
    for p in plaid:
        near = np.argsort(-table, axis=1)[:, :p]
        cand = np.unique(np.concatenate([lists[c] for c in np.unique(near)]))
        plaid[p]["size"].append(len(cand))
        plaid[p]["held"].append(len(top10 & set(cand.tolist())))

res = {"queries": len(sample), "centroids": C, "exhaustive_s_per_query": exhaustive_s / len(sample), "lists": {}}
for name in rows:
    res["lists"][name] = {str(L): {"all_top10": float(np.mean(np.array(v) == 10)), "mean_top10_held": float(np.mean(v)) / 10}
                          for L, v in rows[name].items()}
res["plaid_candidates"] = {str(p): {"mean_size": float(np.mean(v["size"])), "all_top10": float(np.mean(np.array(v["held"]) == 10)),
                                     "mean_top10_held": float(np.mean(v["held"])) / 10} for p, v in plaid.items()}
json.dump(res, open(out, "w"), indent=1)
print(json.dumps(res, indent=1))
