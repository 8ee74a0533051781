#!/usr/bin/env python3
"""Loads a kdhost model export into the torchvision model, for use outside kdhost.

The export must be a `core::BackboneHead` of `resnet::ResNet` (ResNet, ResNeXt, Wide ResNet with
the ImageNet stem and output stride 32) or `mobilenet::MobileNetV2` (with `last_conv = true`) and
an `mlic_heads::GapLinear` head: the students and teachers the embedded recipes train. kdhost's
backbones use torchvision's parameter names, so the weights load with `strict=True` once the
backbone's `backbone.` prefix is dropped and the head's `head.fc` becomes torchvision's `fc`
(MobileNetV2: `classifier.1`). An input channel count other than 3 replaces the first convolution
with one of that many channels, as kdhost's `in_channels` does. The model's output is the logits
(kdhost's `logits`; multi-label tasks apply a sigmoid to them).

    python tools/to_torchvision.py best.pt                        # prints the model built
    python tools/to_torchvision.py best.pt --check PRED_DIR        # compares with kdhost predict
    python tools/to_torchvision.py best.pt --check PRED_DIR --trace student.ts
        # also torch.jit.trace's the model, saves it, and compares the traced model's logits

PRED_DIR is the output of `kdhost predict best.pt --inputs image --out PRED_DIR`. As a module:

    from to_torchvision import load_torchvision
    model = load_torchvision("best.pt").eval()
"""

import argparse
import json
import os
import sys
import tomllib

import numpy as np
import torch
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

EXPORT_FORMAT = "kdhost.model_export.v1"
BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
          50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
          152: (Bottleneck, [3, 8, 36, 3])}


class ExportError(Exception):
    pass


def read_export(path):
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a damaged or foreign file: zip, pickle or torch errors
        raise ExportError(f"{path}: not a readable kdhost export ({error})") from error
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ExportError(f"{path}: expected a {EXPORT_FORMAT} file, found {found}")
    return data


def _option(table, key, default, allowed, what):
    value = table.get(key, default)
    if value not in allowed:
        raise ExportError(f"{what}: {key} = {value!r} has no torchvision counterpart here "
                          f"(supported: {', '.join(map(repr, allowed))})")
    return value


def build(config, num_labels):
    """The torchvision model for a kdhost model config, and the prefix of its classifier."""
    if config.get("type") != "core::BackboneHead":
        raise ExportError(f"the model is {config.get('type')!r}, not a core::BackboneHead")
    backbone, head = config.get("backbone", {}), config.get("head", {})
    if head.get("type") != "mlic_heads::GapLinear":
        raise ExportError(f"the head is {head.get('type')!r}, not mlic_heads::GapLinear")
    if head.get("in_feature", ""):
        raise ExportError("the head pools an inner feature (in_feature); torchvision pools the last")
    classes = head.get("num_classes", 0) or num_labels
    dropout = head.get("dropout", 0.0)
    channels = backbone.get("in_channels", 3)
    kind = backbone.get("type")
    if kind == "resnet::ResNet":
        what = "resnet::ResNet"
        depth = _option(backbone, "depth", 18, list(BLOCKS), what)
        _option(backbone, "stem", "imagenet", ["imagenet"], what)
        _option(backbone, "output_stride", 32, [32], what)
        _option(head, "dropout", 0.0, [0.0], "mlic_heads::GapLinear with a ResNet")
        block, layers = BLOCKS[depth]
        model = ResNet(block, layers, num_classes=classes, groups=backbone.get("groups", 1),
                       width_per_group=backbone.get("width_per_group", 64))
        if channels != 3:
            model.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        return model, "fc."
    if kind == "mobilenet::MobileNetV2":
        what = "mobilenet::MobileNetV2"
        _option(backbone, "output_stride", 32, [32], what)
        _option(backbone, "last_conv", False, [True], what)
        model = torchvision.models.MobileNetV2(num_classes=classes,
                                               width_mult=backbone.get("width_mult", 1.0),
                                               dropout=dropout)
        if channels != 3:
            first = model.features[0][0]
            model.features[0][0] = torch.nn.Conv2d(channels, first.out_channels, 3, 2, 1,
                                                   bias=False)
        return model, "classifier.1."
    raise ExportError(f"the backbone is {kind!r}; supported: resnet::ResNet, "
                      "mobilenet::MobileNetV2")


def load_torchvision(path):
    """The torchvision model of the kdhost export at `path`, its weights loaded strictly."""
    data = read_export(path)
    config = tomllib.loads(data["model_config"])
    model, classifier = build(config, len(data.get("class_names", [])))
    state = {}
    for name, tensor in data["state_dict"].items():
        if name.startswith("backbone."):
            state[name[len("backbone."):]] = tensor
        elif name.startswith("head.fc."):
            state[classifier + name[len("head.fc."):]] = tensor
        else:
            raise ExportError(f"{path}: unexpected parameter {name!r}")
    model.load_state_dict(state, strict=True)
    return model


def max_difference(a, b):
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def check(model, directory, trace, tolerance):
    meta = json.load(open(os.path.join(directory, "meta.json"), encoding="utf-8"))
    if "image" not in meta.get("inputs", {}):
        raise ExportError(f"{directory}: no batch.image.npy; predict with --inputs image")
    images = torch.from_numpy(np.load(os.path.join(directory, "batch.image.npy")))
    expected = np.load(os.path.join(directory, meta["outputs"]["logits"]["file"]))
    model.eval()
    with torch.no_grad():
        logits = model(images).numpy()
    difference = max_difference(logits, expected)
    print(f"torchvision model: {images.shape[0]} samples, max relative |logits - kdhost predict| "
          f"= {difference:.3g}")
    ok = difference <= tolerance
    if trace:
        with torch.no_grad():
            traced = torch.jit.trace(model, images[:1])
        traced.save(trace)
        reloaded = torch.jit.load(trace)
        with torch.no_grad():
            traced_logits = reloaded(images).numpy()
        traced_difference = max_difference(traced_logits, expected)
        print(f"traced model ({trace}): max relative |logits - kdhost predict| = "
              f"{traced_difference:.3g}")
        ok = ok and traced_difference <= tolerance
    print("matches kdhost predict" if ok else f"DIFFERS from kdhost predict (> {tolerance:g})")
    return ok


def main(argv):
    parser = argparse.ArgumentParser(description="Load a kdhost export into torchvision.")
    parser.add_argument("export", help="the kdhost model export (.pt)")
    parser.add_argument("--check", metavar="PRED_DIR",
                        help="compare with `kdhost predict EXPORT --inputs image --out PRED_DIR`")
    parser.add_argument("--trace", metavar="FILE",
                        help="with --check: also save torch.jit.trace's model to FILE and compare")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="largest |difference| / max(1, max |kdhost logits|) accepted")
    args = parser.parse_args(argv)
    try:
        model = load_torchvision(args.export)
        if not args.check:
            print(model)
            return 0
        return 0 if check(model, args.check, args.trace, args.tolerance) else 1
    except ExportError as error:
        print(f"to_torchvision: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
