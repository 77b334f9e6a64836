"""imram.Model against the authors' fixtures (1e-5, the C++ parity tests' tolerance) and against
the command line on the same inputs."""

import json
import re

import numpy as np
import pytest

import imram
from conftest import ROOT, assert_same_numbers, run_imram, run_json

PARITY_CASES = ["text_k3_norm", "image_k3", "full_k2_lambda4"]
CHECKPOINTS = ["legacy_text_k2", "zip_full_k3", "legacy_weight_norm_image_k2"]


def test_version_is_the_projects():
    version = re.search(r"project\(imram VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert imram.__version__ == version


def test_tokenize_gives_the_reference_tokens(testdata):
    captions = (testdata / "tokenizer" / "f30k_test_caps.txt").read_text(encoding="utf-8").splitlines()
    tokens = (testdata / "tokenizer" / "f30k_test_tokens.txt").read_text(encoding="utf-8").splitlines()
    assert len(captions) == len(tokens) > 100
    mismatches = [i for i, (c, t) in enumerate(zip(captions, tokens)) if " ".join(imram.tokenize(c)) != t]
    assert mismatches == []


@pytest.mark.parametrize("case", PARITY_CASES)
def test_scores_and_encodings_match_the_authors(testdata, case):
    folder = testdata / "reference" / case
    model = imram.Model.import_checkpoint(str(folder))
    images = np.load(folder / "inputs" / "images.npy")
    ids, lengths = np.load(folder / "inputs" / "captions.npy"), np.load(folder / "inputs" / "lengths.npy")
    sims = model.score(images, (ids, lengths))
    assert sims.dtype == np.float32 and sims.shape == (len(images), len(ids))
    assert np.abs(sims - np.load(folder / "expected" / "sims.npy")).max() <= 1e-5
    assert np.abs(model.encode_images(images) - np.load(folder / "expected" / "img_emb.npy")).max() <= 1e-5
    words, out_lengths = model.encode_captions((ids, lengths))
    np.testing.assert_array_equal(out_lengths, lengths)
    expected = np.load(folder / "expected" / "cap_emb.npy")
    assert np.abs(words - expected[:, : words.shape[1]]).max() <= 1e-5


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_imported_checkpoints_score_as_the_authors(testdata, tmp_path, case):
    folder = testdata / "checkpoints" / case
    out = tmp_path / "model"
    model = imram.Model.import_checkpoint(str(folder / "model_best.pth.tar"), vocab=str(folder / "vocab.json"),
                                          out=str(out))
    assert model.path == str(out) and model.has_vocabulary
    images = np.load(folder / "inputs" / "images.npy")
    captions = (np.load(folder / "inputs" / "captions.npy"), np.load(folder / "inputs" / "lengths.npy"))
    expected = np.load(folder / "expected" / "sims.npy")
    assert np.abs(model.score(images, captions) - expected).max() <= 1e-5
    reloaded = imram.Model(str(out))
    assert reloaded.config == model.config
    np.testing.assert_array_equal(reloaded.score(images, captions), model.score(images, captions))


def test_score_is_imram_score(world, tmp_path):
    out = tmp_path / "sims.npy"
    run_imram("score", "--model", world.model, "--images", world.data / "test_ims.npy",
              "--captions", world.data / "test_caps.txt", "--out", out, "--dtype", "float32")
    model = imram.Model(str(world.model))
    assert model.config["iteration_steps"] == 3
    sims = model.score(world.test_images(), world.test_captions())
    np.testing.assert_allclose(sims, np.load(out), rtol=0, atol=1e-6)


def test_every_layout_of_the_features_scores_alike(world):
    model = imram.Model(str(world.model))
    images, captions = world.test_images(), world.test_captions()
    expected = model.score(images, captions)
    fortran = np.asfortranarray(images)
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(model.score(fortran, captions), expected)
    strided = np.concatenate([images, images], axis=2)[:, :, ::2]
    np.testing.assert_array_equal(model.score(np.ascontiguousarray(strided), captions), model.score(strided, captions))
    mapped = np.load(world.data / "test_ims.npy", mmap_mode="r")
    np.testing.assert_array_equal(model.score(mapped, captions), expected)
    # float16 features are read as their float32 values
    half = images.astype(np.float16)
    np.testing.assert_array_equal(model.score(half, captions), model.score(half.astype(np.float32), captions))


def test_torch_tensors_are_read_as_arrays(world):
    torch = pytest.importorskip("torch")
    model = imram.Model(str(world.model))
    images, captions = world.test_images(), world.test_captions()
    np.testing.assert_array_equal(model.score(torch.from_numpy(images), captions), model.score(images, captions))
    np.testing.assert_array_equal(model.score(torch.from_numpy(images).transpose(0, 1).contiguous().transpose(0, 1),
                                              captions), model.score(images, captions))


def test_captions_as_text_and_as_ids_agree(world):
    model = imram.Model(str(world.model))
    captions = world.test_captions()[:7]
    words_from_text, lengths = model.encode_captions(captions)
    vocab = json.loads((world.model / "vocab.json").read_text())["word2idx"]
    ids = np.zeros((len(captions), lengths.max()), dtype=np.int64)
    for j, caption in enumerate(captions):
        tokens = ["<start>", *imram.tokenize(caption), "<end>"]
        ids[j, : len(tokens)] = [vocab.get(t, vocab["<unk>"]) for t in tokens]
    words_from_ids, _ = model.encode_captions((ids, lengths))
    np.testing.assert_array_equal(words_from_text, words_from_ids)
    images = world.test_images()[:3]
    np.testing.assert_array_equal(model.score(images, captions), model.score(images, (ids, lengths)))


def test_explain_is_imram_explain(world):
    model = imram.Model(str(world.model))
    caption = world.test_captions()[0]
    cli = run_json("explain", "--model", world.model, "--data", world.data, "--image", 2, "--caption", 0, "--json")
    ours = model.explain(world.test_images()[2], caption)
    assert ours["score"] == pytest.approx(cli["score"], abs=1e-6)
    assert [t["text"] for t in ours["tokens"]] == [t["text"] for t in cli["tokens"]]
    assert len(ours["directions"]) == len(cli["directions"]) == 1
    for mine, theirs in zip(ours["directions"][0]["steps"], cli["directions"][0]["steps"]):
        assert mine["similarity"] == pytest.approx(theirs["similarity"], abs=1e-6)
        np.testing.assert_allclose(mine["attention"], np.array(theirs["attention"]), atol=1e-6)
    score = model.score(world.test_images()[2:3], [caption])[0, 0]
    assert ours["score"] == pytest.approx(float(score), abs=1e-5)


def test_metrics_are_imram_metrics(tmp_path):
    rng = np.random.default_rng(3)
    for images, fold5 in [(12, False), (10, True)]:
        sims = rng.standard_normal((images, images * 5)).astype(np.float32)
        path = tmp_path / "sims.npy"
        np.save(path, sims.astype(np.float64))
        cli = run_json("metrics", "--sims", path, "--json", *(["--fold5"] if fold5 else []))
        assert_same_numbers(imram.metrics(sims, fold5=fold5), cli)


def test_evaluate_is_imram_eval(world, tmp_path):
    sims_path = tmp_path / "sims.npy"
    cli = run_json("eval", "--model", world.model, "--data", world.data, "--split", "test", "--json",
                   "--save-sims", sims_path)
    ours = imram.evaluate(imram.Model(str(world.model)), str(world.data), "test", return_sims=True)
    np.testing.assert_allclose(ours.pop("sims"), np.load(sims_path), rtol=0, atol=1e-6)
    assert ours.pop("seconds") >= 0
    assert_same_numbers(ours, cli)
