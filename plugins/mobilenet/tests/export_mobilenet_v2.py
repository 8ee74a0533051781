#!/usr/bin/env python3
"""Writes torchvision's mobilenet_v2 `features` with random weights, an input and its stage outputs.

The reference for mobilenet_torchvision_test. The output file (torch.save) is a dictionary:

    state        features' state dict under kdhost's names (features.0.0.weight, ...)
    input        a random [batch, 3, size, size] image batch
    feat.layer1  ... feat.layer4: torchvision's outputs after features.3, .6, .13 and the last block
                 in eval mode

With --output-stride 16 or 8 torchvision's modules are rewritten in place into the dilated network
that DeepLabV3-MobileNetV2 uses, so the comparison also covers kdhost's dilation.
"""

import argparse
import pathlib
import sys

import torch
import torchvision

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tools"))
from export_torchvision import perturb_norm  # noqa: E402  (random, well-scaled batch norms)

TAPS = {3: "feat.layer1", 6: "feat.layer2", 13: "feat.layer3"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--output-stride", type=int, default=32, choices=(8, 16, 32))
    parser.add_argument("--last-conv", action="store_true", help="keep features.18")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2)
    return parser.parse_args()


def dilate(features, output_stride):
    """Once the running stride reaches output_stride, a strided 3x3 convolution gets stride 1 and
    keeps the current dilation, and every later 3x3 convolution gets twice as much (padding equal to
    the dilation keeps the resolution)."""
    stride, dilation = 1, 1
    for module in features.modules():
        if not isinstance(module, torch.nn.Conv2d) or module.kernel_size != (3, 3):
            continue
        if module.stride == (2, 2) and stride * 2 <= output_stride:
            stride *= 2
            continue
        module.dilation = (dilation, dilation)
        module.padding = (dilation, dilation)
        if module.stride == (2, 2):
            module.stride = (1, 1)
            dilation *= 2


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    model = torchvision.models.mobilenet_v2(weights=None, width_mult=args.width_mult)
    features = model.features if args.last_conv else model.features[:18]
    dilate(features, args.output_stride)
    perturb_norm(features, args.seed)
    generator = torch.Generator().manual_seed(args.seed + 2)

    result = {
        "state": {"features." + name: tensor.detach().clone().contiguous()
                  for name, tensor in features.state_dict().items()},
        "input": torch.randn(args.batch_size, 3, args.size, args.size, generator=generator),
    }
    x = result["input"]
    with torch.no_grad():
        for index, block in enumerate(features):
            x = block(x)
            if index in TAPS:
                result[TAPS[index]] = x
    result["feat.layer4"] = x
    torch.save(result, args.out)


if __name__ == "__main__":
    main()
