"""Open a search index and query it: the Python form of `imram search --index`.

    python examples/python/search.py INDEX "a dog running on the beach" ["another query" ...]

INDEX is a directory written by `imram index build` (or `imram.Index.build`).
"""

import sys

import imram

path, *queries = sys.argv[1:]
if not queries:
    sys.exit(__doc__)

with imram.Index(path) as index:
    print(f"{len(index)} images, {index.num_captions} captions")
    results = index.search(queries, k=5)  # the default two-stage search, all queries at once
    for query, answer in zip(queries, results.answers):
        print(f"\n{query}  ({answer['timings']['stage2_ms']:.0f} ms of IMRAM for the batch)")
        for hit in answer["results"]:
            print(f"  {hit['rank']}. image {hit['image']}  {hit['score']:.4f}  {hit.get('description', '')}")
        for warning in answer.get("warnings", []):
            print(f"  warning: {warning}")

    # Image queries rank the captions: image 0's five best.
    best = index.search_images(0, k=5)
    for caption, score in zip(best.ids[0], best.scores[0]):
        print(f"image 0 -> caption {caption}  {score:.4f}  {index.captions[caption]}")
