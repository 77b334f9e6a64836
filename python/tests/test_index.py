"""imram.Index against `imram search --json` and `imram index` on the same index."""

import shutil
import threading

import numpy as np
import pytest

import imram
from conftest import assert_same_numbers, run_imram, run_json

QUERIES = ["a small red circle", "two blue squares on the left", "green triangle"]


def cli_search(index, *args):
    return run_json("search", "--index", index, "--json", *args)


def comparable(answer):
    """What a search answer says about its ranking (its timings differ run to run)."""
    return {key: value for key, value in answer.items() if key != "timings"}


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"shortlist": 0},
        {"shortlist": 4, "prefilter": 8},
        {"shortlist": 3, "prefilter": 10, "step1": 5},
        {"shortlist": 3, "prefilter": 10, "step1": 0},
    ],
)
def test_text_search_is_imram_search(world, settings):
    index = imram.Index(str(world.index))
    results = index.search(QUERIES, k=5, **settings)
    assert results.ids.shape == results.scores.shape == (len(QUERIES), 5)
    flags = [f"--{name} {value}".split() for name, value in settings.items()]
    for q, query in enumerate(QUERIES):
        cli = cli_search(world.index, "--query", query, "--top", 5, *[word for flag in flags for word in flag])
        assert [r["image"] for r in cli["results"]] == results.ids[q].tolist()
        np.testing.assert_allclose(results.scores[q], [r["score"] for r in cli["results"]], atol=1e-6)
        assert_same_numbers(comparable(results.answers[q]), comparable(cli), tolerance=1e-6)
        if "step1" in settings:
            # The coded first step runs where step1 keeps part of the first list, and only there.
            coded = results.answers[q]["timings"]["coded_ms"]
            assert (coded > 0) == (settings["step1"] > 0), results.answers[q]["timings"]
    if settings.get("shortlist") == 0:
        assert np.isnan(results.stage1).all()
    else:
        assert not np.isnan(results.stage1).any()


def test_image_search_is_imram_search(world):
    index = imram.Index(str(world.index))
    results = index.search_images(np.array([0, 3]), k=7)
    for q, image in enumerate([0, 3]):
        cli = cli_search(world.index, "--image", image, "--top", 7)
        assert [r["caption"] for r in cli["results"]] == results.ids[q].tolist()
        assert_same_numbers(comparable(results.answers[q]), comparable(cli), tolerance=1e-6)
    one = index.search_images(3, k=7)
    np.testing.assert_array_equal(one.ids[0], results.ids[1])


def test_a_batch_answers_each_query_as_if_alone(world):
    index = imram.Index(str(world.index))
    batch = index.search(QUERIES, k=4)
    for q, query in enumerate(QUERIES):
        alone = index.search(query, k=4)
        np.testing.assert_array_equal(alone.ids[0], batch.ids[q])
        np.testing.assert_array_equal(alone.scores[0], batch.scores[q])


def test_build_add_and_verify(world, tmp_path):
    out = tmp_path / "built"
    index = imram.Index.build(imram.Model(str(world.headed)), str(world.data), "test", out=str(out))
    assert (len(index), index.num_captions, index.has_shortlist) == (10, 50, True)
    theirs = imram.Index(str(world.index))
    np.testing.assert_array_equal(index.search(QUERIES, k=5).scores, theirs.search(QUERIES, k=5).scores)
    index.add(str(world.data), "dev")
    assert (len(index), index.num_captions) == (20, 100)
    index.verify()
    run_imram("index", "verify", out)
    summary = run_imram("search", "--index", out, "--query", QUERIES[0], "--json")
    assert '"results"' in summary
    assert index.captions[:50] == theirs.captions


def test_an_index_without_its_exact_store_says_its_scores_are_approximate(world, tmp_path):
    out = tmp_path / "compressed"
    index = imram.Index.build(str(world.headed), str(world.data), "test", out=str(out), exact_store=False)
    assert not index.exact_store and imram.Index(str(world.index)).exact_store
    assert not (out / "regions.bin").exists()
    results = index.search(QUERIES, k=5)
    assert all(answer["exact_scores"] is False for answer in results.answers)
    cli = cli_search(out, "--query", QUERIES[0], "--top", 5)
    assert [r["image"] for r in cli["results"]] == results.ids[0].tolist()
    assert cli["exact_scores"] is False


def test_two_threads_search_one_index_as_one_after_the_other(world):
    index = imram.Index(str(world.index))
    queries = [f"{size} {colour} {shape}" for size in ["small", "large"] for colour in ["red", "blue", "green"]
               for shape in ["circle", "square"]]
    expected = [index.search(q, k=6, shortlist=0) for q in queries]
    answers = {}

    def work(offset):
        for round_ in range(3):
            for i in range(offset, len(queries), 2):
                answers[(i, round_)] = index.search(queries[i], k=6, shortlist=0)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 3 * len(queries)
    for (i, _), got in answers.items():
        np.testing.assert_array_equal(got.ids, expected[i].ids)
        np.testing.assert_array_equal(got.scores, expected[i].scores)


def test_a_closed_index_refuses_searches(world):
    with imram.Index(str(world.index)) as index:
        assert index.search("red", k=1).ids.shape == (1, 1)
    with pytest.raises(ValueError, match="closed"):
        index.search("red")
    with pytest.raises(ValueError, match="closed"):
        len(index)


def test_index_errors(world, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such index directory"):
        imram.Index(str(tmp_path / "missing"))
    with pytest.raises(imram.Error):
        imram.Index(str(world.data))
    index = imram.Index(str(world.index))
    with pytest.raises(ValueError, match="out of range"):
        index.search_images(10)
    with pytest.raises(ValueError, match="k: must be at least 1"):
        index.search("red", k=0)
    with pytest.raises(ValueError, match="queries"):
        index.search([1, 2])
    with pytest.raises(ValueError, match="empty"):
        index.search([])
    with pytest.raises(imram.Error, match="no words|no tokens|empty"):
        index.search("   ")
    damaged = tmp_path / "damaged"
    shutil.copytree(world.index, damaged)
    (damaged / "manifest.json").write_text("{")
    with pytest.raises(imram.InputError):
        imram.Index(str(damaged))
