#!/usr/bin/python3
"""The detector recipe of docs/features.md: torchvision's Faster R-CNN (ResNet-50 FPN) returning,
for one image, its detected boxes, each box's 1024 features from the box head (the features the
classifier sees, as bottom-up attention uses its detector's), and their scores; exported as
TorchScript for `imram features --contract detector`.

The model normalises and resizes by itself, so imram is told to hand it [0, 1] pixels:

    python3 scripts/export_fasterrcnn_detector.py frcnn.pt            # COCO weights (downloads)
    python3 scripts/export_fasterrcnn_detector.py test.pt --random-weights
    imram features --backbone frcnn.pt --contract detector --regions 36 --size 800x600 \\
        --mean 0 0 0 --std 1 1 1 --images photos/ --out mydata --split test
"""
import argparse
from typing import List, Tuple

import torch
import torchvision


class FasterRCNNRegions(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        # Keep every box the non-maximum suppression leaves, up to 100: imram keeps the best R.
        self.model.roi_heads.score_thresh = 0.0
        self.model.roi_heads.detections_per_img = 100

    def forward(self, image):
        original: List[Tuple[int, int]] = [(image.shape[1], image.shape[2])]
        images, _ = self.model.transform([image])
        features = self.model.backbone(images.tensors)
        proposals, _ = self.model.rpn(images, features)
        detections, _ = self.model.roi_heads(features, proposals, images.image_sizes)
        boxes = detections[0]["boxes"]
        pooled = self.model.roi_heads.box_roi_pool(features, [boxes], images.image_sizes)
        vectors = self.model.roi_heads.box_head(pooled)
        detections = self.model.transform.postprocess(detections, images.image_sizes, original)
        return detections[0]["boxes"], vectors, detections[0]["scores"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--random-weights", action="store_true")
    args = parser.parse_args()
    weights = None if args.random_weights else "DEFAULT"
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=weights, weights_backbone=None if args.random_weights else "DEFAULT")
    torch.jit.script(FasterRCNNRegions(model.eval()).eval()).save(args.out)


if __name__ == "__main__":
    main()
