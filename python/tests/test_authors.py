"""The authors' own PyTorch model and imram.Model in one interpreter, on the same weights and inputs.

Runs only when IMRAM_REF_DIR names a checkout of github.com/HuiChen24/IMRAM (never copied into
this project). Their modules import torchvision, nltk and PIL, which scoring does not use, and
expect CUDA: stubbed, as scripts/bench_authors.sh does.
"""

import os
import sys
import types

import numpy as np
import pytest

import imram

REF_DIR = os.environ.get("IMRAM_REF_DIR")
pytestmark = pytest.mark.skipif(not REF_DIR, reason="IMRAM_REF_DIR does not name the authors' code")


def authors_modules():
    for name in ["torchvision", "torchvision.models", "torchvision.transforms", "nltk", "PIL", "PIL.Image"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["PIL"].Image = sys.modules["PIL.Image"]
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, REF_DIR)
    import evaluation
    from model import SCAN

    return torch, evaluation, SCAN


@pytest.mark.parametrize("case", ["legacy_text_k2", "zip_full_k3", "legacy_weight_norm_image_k2"])
def test_the_authors_model_scores_as_imram(testdata, case):
    torch, evaluation, SCAN = authors_modules()
    folder = testdata / "checkpoints" / case
    checkpoint = torch.load(folder / "model_best.pth.tar", map_location="cpu")
    opt = checkpoint["opt"]
    theirs = torch.nn.DataParallel(SCAN(opt))
    theirs.load_state_dict(checkpoint["model"])
    theirs.eval()
    rng = np.random.default_rng(int.from_bytes(case.encode(), "little") % 2**32)
    images = rng.standard_normal((6, 9, opt.img_dim)).astype(np.float32)
    lengths = rng.integers(3, 12, 11).astype(np.int64)
    ids = np.zeros((len(lengths), lengths.max()), dtype=np.int64)
    for j, n in enumerate(lengths):
        ids[j, 0], ids[j, n - 1] = 1, 2
        ids[j, 1 : n - 1] = rng.integers(4, opt.vocab_size, n - 2)
    with torch.no_grad():
        img_fc, img_emb, ht, cap_emb, cap_lens = theirs.module.forward_emb(
            torch.from_numpy(images), torch.from_numpy(ids), torch.from_numpy(lengths), None)
        expected = evaluation.shard_xattn(theirs.module, img_fc.numpy(), img_emb.numpy(), ht.numpy(),
                                          cap_emb.numpy(), cap_lens.tolist(), opt, shard_size=128)
    ours = imram.Model.import_checkpoint(str(folder / "model_best.pth.tar"), vocab=str(folder / "vocab.json"))
    difference = float(np.abs(ours.score(images, (ids, lengths)) - expected).max())
    print(f"{case}: largest difference {difference:.3g}")
    assert difference <= 1e-5
