"""Bad input raises the right exception with the command line's one-line message; nothing crashes."""

import shutil

import numpy as np
import pytest

import imram


@pytest.fixture(scope="module")
def model(world):
    return imram.Model(str(world.model))


def test_wrong_arrays_raise_value_errors(world, model):
    images, captions = world.test_images(), world.test_captions()
    cases = [
        (images.astype(np.int32), "expected float32 or float16 values"),
        (images[0], "expected 3 dimensions, got 2"),
        (images[:0], "empty"),
        ("not an array", "expected float32 or float16 values"),
        (images[:, :, :5], "the model expects img_dim 16"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            model.score(bad, captions)
    with_nan = images.copy()
    with_nan[3, 2, 1] = np.nan
    with pytest.raises(imram.InputError, match="image 3 holds NaN or infinite features"):
        model.score(with_nan, captions)
    with pytest.raises(ValueError, match="captions"):
        model.score(images, [1, 2, 3])
    with pytest.raises(ValueError, match="the list is empty"):
        model.score(images, [])
    with pytest.raises(imram.InputError, match="caption has no tokens"):
        model.score(images, ["   "])


def test_wrong_caption_ids_raise_value_errors(model):
    images = np.zeros((1, 8, 16), dtype=np.float32)
    ids = np.array([[1, 5, 2]], dtype=np.int64)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.score(images, (np.array([[1, 10**6, 2]]), np.array([3])))
    with pytest.raises(ValueError, match="outside 1..3"):
        model.score(images, (ids, np.array([4])))
    with pytest.raises(ValueError, match="2 lengths for 1 captions"):
        model.score(images, (ids, np.array([3, 3])))
    with pytest.raises(ValueError, match="expected integers"):
        model.score(images, (ids.astype(np.float32), np.array([3])))


def test_tensors_that_are_not_plain_cpu_arrays(world, model):
    torch = pytest.importorskip("torch")
    images = torch.from_numpy(world.test_images()).requires_grad_()
    with pytest.raises(ValueError, match="requires grad; pass tensor.detach"):
        model.score(images, world.test_captions())


def test_files_that_are_missing_or_wrong(world, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        imram.Model(str(tmp_path / "missing"))
    with pytest.raises(OSError):
        imram.Model.import_checkpoint(str(tmp_path / "missing.pth.tar"))
    not_a_checkpoint = tmp_path / "model_best.pth.tar"
    not_a_checkpoint.write_bytes(b"certainly not a checkpoint")
    with pytest.raises(imram.InputError, match="model_best.pth.tar"):
        imram.Model.import_checkpoint(str(not_a_checkpoint))
    with pytest.raises(imram.Error):
        imram.Model(str(world.data))
    with pytest.raises(FileNotFoundError, match="no such dataset directory"):
        imram.evaluate(imram.Model(str(world.model)), str(tmp_path / "nowhere"))
    with pytest.raises(imram.InputError):
        imram.evaluate(imram.Model(str(world.model)), str(world.data), "no_such_split")


def test_a_model_without_vocabulary_scores_ids_only(testdata):
    model = imram.Model.import_checkpoint(str(testdata / "reference" / "image_k3"))
    assert not model.has_vocabulary
    images = np.load(testdata / "reference" / "image_k3" / "inputs" / "images.npy")
    with pytest.raises(ValueError, match="no vocabulary"):
        model.score(images, ["a caption"])


def test_exception_classes():
    assert issubclass(imram.InputError, imram.Error) and issubclass(imram.InputError, ValueError)
    assert issubclass(imram.IoError, imram.Error) and issubclass(imram.IoError, OSError)


def test_library_warnings_are_python_warnings(world, tmp_path, capfd):
    # A caption line that is not UTF-8 is read with U+FFFD and warned about: in Python through
    # `warnings`, not printed on standard error.
    data = tmp_path / "data"
    shutil.copytree(world.data, data)
    captions = (data / "test_caps.txt").read_bytes().split(b"\n")
    captions[3] = b"\xff" + captions[3]
    (data / "test_caps.txt").write_bytes(b"\n".join(captions))
    capfd.readouterr()
    with pytest.warns(UserWarning, match=r"test_caps.txt:4: 1 caption line\(s\) are not valid UTF-8"):
        imram.evaluate(imram.Model(str(world.model)), str(data), "test")
    assert "imram: warning" not in capfd.readouterr().err
