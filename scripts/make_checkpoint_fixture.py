#!/usr/bin/python3
"""Writes a checkpoint fixture with the authors' code (github.com/HuiChen24/IMRAM), the way their
train_gpus.py saves one, and their own evaluation's score matrix for random inputs.

    /usr/bin/python3 scripts/make_checkpoint_fixture.py AUTHORS_CHECKOUT OUT_DIR

Made tests/testdata/checkpoints/legacy_weight_norm_image_k2 (Debian python3-torch 1.13): an
image-IMRAM model, K=2, with the `weight_norm` image layer (weight_g scaled away from its
initial value so that it matters), IMRAM norm on, `l2norm` raw-feature norm, saved in the
legacy format (as PyTorch 1.0, the authors' version, writes) with an extra `Eiters` entry.
Nothing of the authors' code is copied: it is imported from AUTHORS_CHECKOUT. Their modules
import torchvision, nltk and PIL, which this does not use, and expect CUDA: stubbed.
"""
import json
import os
import sys
import types

authors, out = sys.argv[1:3]
for name in ["torchvision", "torchvision.models", "torchvision.transforms", "nltk", "PIL", "PIL.Image"]:
    sys.modules[name] = types.ModuleType(name)
sys.modules["PIL"].Image = sys.modules["PIL.Image"]
import numpy as np
import torch
torch.Tensor.cuda = lambda self, *args, **kwargs: self
torch.nn.Module.cuda = lambda self, *args, **kwargs: self
sys.path.insert(0, authors)
import opts, evaluation
from model import SCAN

torch.manual_seed(11)
rng = np.random.default_rng(11)
sys.argv = ["train_gpus.py", "--data_name", "f30k_precomp", "--max_violation", "--bi_gru", "--agg_func=Mean",
            "--lambda_softmax=5", "--model_mode", "image_IMRAM", "--iteration_step", "2",
            "--precomp_enc_type", "weight_norm", "--raw_feature_norm", "l2norm",
            "--img_dim", "20", "--embed_size", "16", "--word_dim", "12"]
opt = opts.parse_opt()
opt.vocab_size = 30
model = torch.nn.DataParallel(SCAN(opt))
with torch.no_grad():
    model.module.img_enc.fc_local.weight_g.mul_(1.7)
    model.module.img_enc.fc_local.bias.uniform_(-0.1, 0.1)
    for layer in [model.module.linear_t2i, model.module.gate_t2i, model.module.linear_i2t, model.module.gate_i2t]:
        layer.bias.uniform_(-0.2, 0.2)
model.eval()

os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
os.makedirs(os.path.join(out, "expected"), exist_ok=True)
checkpoint = {"epoch": 7, "model": model.state_dict(), "best_rsum": 412.5, "opt": opt, "Eiters": 12345}
torch.save(checkpoint, os.path.join(out, "model_best.pth.tar"), _use_new_zipfile_serialization=False)

words = ["<pad>", "<start>", "<end>", "<unk>"] + ["tok%d" % i for i in range(opt.vocab_size - 4)]
with open(os.path.join(out, "vocab.json"), "w") as f:
    json.dump({"word2idx": {w: i for i, w in enumerate(words)}, "idx2word": {str(i): w for i, w in enumerate(words)}}, f)

images = rng.standard_normal((3, 7, opt.img_dim)).astype(np.float32)
lengths = np.array([8, 3, 6, 5, 2], dtype=np.int64)
captions = np.zeros((len(lengths), lengths.max()), dtype=np.int64)
for j, n in enumerate(lengths):
    captions[j, 0], captions[j, n - 1] = 1, 2
    captions[j, 1:n - 1] = rng.integers(4, opt.vocab_size, n - 2)
np.save(os.path.join(out, "inputs", "images.npy"), images)
np.save(os.path.join(out, "inputs", "captions.npy"), captions)
np.save(os.path.join(out, "inputs", "lengths.npy"), lengths)

with torch.no_grad():  # as evaluation.evalrank: encode, then shard_xattn
    img_fc, img_emb, ht, cap_emb, cap_lens = model.module.forward_emb(
        torch.from_numpy(images), torch.from_numpy(captions), torch.from_numpy(lengths), None)
    sims = evaluation.shard_xattn(model.module, img_fc.numpy(), img_emb.numpy(), ht.numpy(), cap_emb.numpy(),
                                  cap_lens.tolist(), opt, shard_size=128)
np.save(os.path.join(out, "expected", "sims.npy"), sims.astype(np.float64))
with open(os.path.join(out, "case.json"), "w") as f:
    json.dump({"kind": "checkpoint", "format": "legacy", "checkpoint": "model_best.pth.tar",
               "torch_save": "torch.save(dict, path, _use_new_zipfile_serialization=False) by PyTorch " + torch.__version__,
               "keys": sorted(checkpoint), "state_dict_keys": list(checkpoint["model"].keys()),
               "epoch": checkpoint["epoch"], "best_rsum": checkpoint["best_rsum"], "opt": vars(opt),
               "note": "made by scripts/make_checkpoint_fixture.py with the authors' code"}, f, indent=1)
print("wrote", out, "sims", sims.shape)
