#!/usr/bin/python3
"""The grid recipe of docs/features.md: a torchvision ResNet up to its last convolution, its feature
map pooled to a G x G grid (6 x 6: 36 regions of 2048 features, the shape of the precomputed
Flickr30K/COCO features), exported as TorchScript for `imram features --contract grid`.

    python3 scripts/export_resnet_grid.py resnet152_grid.pt            # ImageNet weights (downloads)
    python3 scripts/export_resnet_grid.py test.pt --random-weights     # offline check of the recipe
    imram features --backbone resnet152_grid.pt --images photos/ --out mydata --split test --size 448
"""
import argparse

import torch
import torch.nn.functional as F
import torchvision


class ResNetGrid(torch.nn.Module):
    def __init__(self, resnet, grid: int):
        super().__init__()
        # Everything but the global pooling and the classifier.
        self.body = torch.nn.Sequential(*list(resnet.children())[:-2])
        self.grid = grid

    def forward(self, images):
        return F.adaptive_avg_pool2d(self.body(images), self.grid)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--depth", type=int, default=152, choices=[18, 34, 50, 101, 152])
    parser.add_argument("--grid", type=int, default=6)
    parser.add_argument("--random-weights", action="store_true")
    args = parser.parse_args()
    constructor = getattr(torchvision.models, f"resnet{args.depth}")
    resnet = constructor(weights=None if args.random_weights else "DEFAULT")
    torch.jit.script(ResNetGrid(resnet, args.grid).eval()).save(args.out)


if __name__ == "__main__":
    main()
