#!/usr/bin/python3
"""Exports the small backbones that imram's tests and its pixels demo run, as TorchScript, and
the features PyTorch computes with them for a known picture (the tests compare imram's to these).

The weights are fixed random convolutions (seeded): no pretrained weights can be downloaded where
imram is built, and the point is the pipeline, not the features' quality. Run with Debian's
python3-torch (no other Python package is needed; the picture is written by hand as a PNG):

    /usr/bin/python3 scripts/export_test_backbones.py tests/testdata/backbones

The outputs are checked in, so that building and testing imram needs no Python.
"""
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def conv_flops(convs, height, width):
    """Multiply-adds x 2 of a chain of convolutions on a height x width input."""
    flops = 0
    for conv in convs:
        height = (height + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        width = (width + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
        flops += 2 * conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] * height * width
    return flops


def convolutions(dim):
    return nn.ModuleList([
        nn.Conv2d(3, 32, 5, stride=2, padding=2),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.Conv2d(64, 128, 3, stride=2, padding=1),
        nn.Conv2d(128, dim, 1),
    ])


class GridBackbone(nn.Module):
    """The grid contract: images [B,3,H,W] -> feature map [B,dim,grid,grid].

    Random convolutions answer a plain background with one large vector that every cell shares
    (cells' features had a cosine of 0.99 with one another), which leaves a model little to learn
    from; so each picture's mean cell is subtracted and the rest scaled to unit spread: what
    remains is what sets a cell apart from the rest of its picture."""
    flops_per_picture: int

    def __init__(self, dim: int, grid: int, size: int):
        super().__init__()
        self.convs = convolutions(dim)
        self.grid = grid
        self.flops_per_picture = conv_flops(self.convs, size, size)

    def forward(self, images):
        x = images
        for conv in self.convs:
            x = F.relu(conv(x))
        cells = F.adaptive_max_pool2d(x, self.grid)
        centred = cells - cells.mean(dim=[2, 3], keepdim=True)
        return centred / (centred.std(dim=[1, 2, 3], keepdim=True) + 1e-6)


class BoxDetector(nn.Module):
    """The detector contract: image [3,H,W] -> (boxes [N,4] x1,y1,x2,y2 in pixels, features
    [N,dim], scores [N]). Proposals are the cells of 2x2, 3x3 and 4x4 grids; a box scores by how
    much its pixels vary (shapes over a plain background); its features are the feature map
    averaged over the box."""

    def __init__(self, dim: int):
        super().__init__()
        self.convs = convolutions(dim)

    def forward(self, image):
        x = image.unsqueeze(0)
        for conv in self.convs:
            x = F.relu(conv(x))
        features = x[0]
        height, width = image.shape[1], image.shape[2]
        map_height, map_width = features.shape[1], features.shape[2]
        boxes = []
        vectors = []
        scores = []
        for cells in [2, 3, 4]:
            for row in range(cells):
                for col in range(cells):
                    x1, x2 = col * width // cells, (col + 1) * width // cells
                    y1, y2 = row * height // cells, (row + 1) * height // cells
                    boxes.append(torch.tensor([float(x1), float(y1), float(x2), float(y2)]))
                    scores.append(image[:, y1:y2, x1:x2].std())
                    u1, u2 = col * map_width // cells, max((col + 1) * map_width // cells, col * map_width // cells + 1)
                    v1, v2 = row * map_height // cells, max((row + 1) * map_height // cells, row * map_height // cells + 1)
                    vectors.append(features[:, v1:v2, u1:u2].mean(dim=[1, 2]))
        return torch.stack(boxes), torch.stack(vectors), torch.stack(scores)


class WrongShape(nn.Module):
    """Breaks the grid contract: one pooled vector per image, [B, 8]."""

    def forward(self, images):
        return images.mean(dim=[2, 3]).repeat(1, 3)[:, :8]


class TooManyCells(nn.Module):
    """Keeps the grid contract's shape but not its bound: 40 x 40 = 1,600 cells a picture."""

    def forward(self, images):
        return F.adaptive_avg_pool2d(images, 40)


class WrongDtype(nn.Module):
    """Breaks the grid contract: an integer feature map."""

    def forward(self, images):
        return (images[:, :, ::8, ::8] * 10).to(torch.int64)


class DarkIsNotFinite(nn.Module):
    """A grid backbone whose features are NaN for a dark picture: one picture's problem, not the run's."""

    def forward(self, images):
        pooled = F.adaptive_avg_pool2d(images, 2)
        dark = images.mean(dim=[1, 2, 3]) < -1.5
        return torch.where(dark.view(-1, 1, 1, 1), torch.full_like(pooled, float("nan")), pooled)


def png(path, rgb):
    """A minimal 8-bit RGB PNG writer (rgb: uint8 array [H, W, 3])."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        out.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        out.write(chunk(b"IEND", b""))


def known_picture(width, height):
    """Gradients and a few blocks: every pixel differs, every channel matters."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255) // (width - 1), (y * 255) // (height - 1), ((x + y) * 7) % 256], axis=-1)
    rgb[height // 4:height // 2, width // 4:width // 2] = [200, 30, 60]
    rgb[height // 2:3 * height // 4, width // 2:7 * width // 8] = [20, 90, 220]
    return rgb.astype(np.uint8)


def with_broken_code(source, target):
    """A TorchScript file whose code does not parse (its main source cut in half): the error must name the file."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/code/__torch__.py"):
                data = data[: len(data) // 2]
            zout.writestr(item, data)


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    grid = GridBackbone(dim=256, grid=6, size=192).eval()
    torch.jit.script(grid).save(os.path.join(out, "grid_d256_g6.pt"))
    # The same convolutions pooled to 4 x 4: 16 regions, the size of the demo's synthetic features,
    # so that the pixels demo trains as fast as the demo.
    coarse = GridBackbone(dim=256, grid=4, size=192).eval()
    coarse.load_state_dict(grid.state_dict())
    torch.jit.script(coarse).save(os.path.join(out, "grid_d256_g4.pt"))
    detector = BoxDetector(dim=32).eval()
    torch.jit.script(detector).save(os.path.join(out, "detector_d32.pt"))
    for name, module in [("wrong_shape.pt", WrongShape()), ("wrong_dtype.pt", WrongDtype()),
                         ("dark_is_not_finite.pt", DarkIsNotFinite()), ("too_many_cells.pt", TooManyCells())]:
        torch.jit.script(module).save(os.path.join(out, name))
    with_broken_code(os.path.join(out, "wrong_shape.pt"), os.path.join(out, "broken_code.pt"))

    # The known picture at exactly the input size of the test (96 x 64), so that no resizing
    # (which differs between libraries) stands between the pixels and the features.
    rgb = known_picture(96, 64)
    png(os.path.join(out, "known_96x64.png"), rgb)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1).float()
    normalised = (pixels / 255.0 - MEAN) / STD
    with torch.no_grad():
        grid_map = grid(normalised.unsqueeze(0))[0]  # [256, 6, 6]
        np.save(os.path.join(out, "known_grid_features.npy"), grid_map.flatten(1).t().contiguous().numpy())
        boxes, vectors, scores = detector(normalised)
        keep = scores.topk(10).indices
        np.save(os.path.join(out, "known_detector_features.npy"), vectors[keep].contiguous().numpy())
        np.save(os.path.join(out, "known_detector_boxes.npy"), boxes[keep].double().numpy())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/testdata/backbones")
