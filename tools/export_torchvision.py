#!/usr/bin/env python3
"""Writes a torchvision ResNet, ResNeXt or Wide ResNet as a kdhost model export.

The export is the file kdhost itself writes for a trained model (format "kdhost.model_export.v1",
see docs/training.md): the weights under kdhost's names, the model's config as TOML (a
core::BackboneHead of resnet::ResNet and mlic_heads::GapLinear), the class names, and empty
metrics. A teacher can then be `checkpoint = "file.pt"`.

    python tools/export_torchvision.py --arch resnet101 --weights IMAGENET1K_V2 --out r101.pt
    python tools/export_torchvision.py --arch resnext50_32x4d --random-seed 0 --num-classes 80 \\
        --out x50.pt --save-io x50_io.pt --input-size 64

Names: torchvision's `fc` becomes the head's `head.fc`, everything else moves under `backbone.`
unchanged (kdhost's ResNet uses torchvision's module names). The classifier is exported only when
the class count matches it; --backbone-only leaves it out in any case.
"""

import argparse
import sys

import torch
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

EXPORT_FORMAT = "kdhost.model_export.v1"
ARCHES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
# Blocks per stage -> depth, as in torchvision's resnet builders.
DEPTHS = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}


def fail(message):
    print(f"export_torchvision: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Export a torchvision ResNet/ResNeXt/Wide ResNet as a kdhost model export.")
    parser.add_argument("--arch", required=True, choices=ARCHES, help="torchvision model name")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--weights",
        help="torchvision weights to load, e.g. IMAGENET1K_V2 or DEFAULT (downloaded by "
        "torchvision into $TORCH_HOME/hub/checkpoints unless already there)")
    source.add_argument("--random-seed", type=int, default=0,
                        help="seed of torchvision's random initialisation (without --weights)")
    parser.add_argument("--num-classes", type=int,
                        help="labels of the head (default: the weights' categories, or 1000)")
    parser.add_argument("--class-names",
                        help="text file with one class name per line, in label order")
    parser.add_argument("--backbone-only", action="store_true",
                        help="export the backbone's weights only, not the classifier")
    parser.add_argument("--perturb-norm", action="store_true",
                        help="draw random batch-norm weights, biases and running statistics "
                        "(with --random-seed), so that comparisons also cover them")
    parser.add_argument("--out", required=True, help="the export file to write (.pt)")
    parser.add_argument("--save-io",
                        help="also write {input, logits}: a fixed random input and the "
                        "torchvision model's logits for it in eval mode")
    parser.add_argument("--input-size", type=int, default=224, help="side of the --save-io input")
    parser.add_argument("--batch-size", type=int, default=2, help="images in the --save-io input")
    parser.add_argument("--io-seed", type=int, default=1, help="seed of the --save-io input")
    return parser.parse_args(argv)


def build_model(args):
    """The torchvision model and the category names its weights come with (or None)."""
    if args.weights is None:
        torch.manual_seed(args.random_seed)
        model = torchvision.models.get_model(args.arch, weights=None,
                                             num_classes=args.num_classes or 1000)
        return model, None
    try:
        weights = torchvision.models.get_model_weights(args.arch)[args.weights]
    except KeyError:
        known = ", ".join(w.name for w in torchvision.models.get_model_weights(args.arch))
        fail(f"{args.arch} has no weights {args.weights!r}; torchvision has {known}, DEFAULT")
    try:
        model = torchvision.models.get_model(args.arch, weights=weights)
    except Exception as error:  # the download: URLError, OSError, ... depending on the network
        fail(f"could not load {args.arch} weights {weights.name} ({error}). Without a network, "
             f"download {weights.url} elsewhere and put it into "
             f"{torch.hub.get_dir()}/checkpoints/, or use --random-seed instead of --weights")
    return model, list(weights.meta.get("categories") or []) or None


def perturb_norm(model, seed):
    """Random batch-norm parameters and statistics, scaled to keep deep networks' activations in
    range: weight in [0.6, 1), bias and running mean ~ N(0, 0.1^2), running variance in [0.8, 1.2).
    """
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.6 + 0.4 * torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.8 + 0.4 * torch.rand(c, generator=generator))
                module.num_batches_tracked.fill_(
                    int(torch.randint(1, 1000, (1,), generator=generator)))


def backbone_table(model):
    bottleneck = isinstance(model.layer1[0], Bottleneck)
    if not bottleneck and not isinstance(model.layer1[0], BasicBlock):
        fail(f"unknown block type {type(model.layer1[0]).__name__}")
    blocks = tuple(len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4))
    depth = DEPTHS.get((bottleneck, blocks))
    if depth is None:
        fail(f"no kdhost ResNet depth has {blocks} blocks per stage")
    return depth, model.groups, model.base_width


def model_config(depth, groups, width_per_group, num_classes):
    return (f'type = "core::BackboneHead"\n\n'
            f'[backbone]\ntype = "resnet::ResNet"\ndepth = {depth}\ngroups = {groups}\n'
            f'width_per_group = {width_per_group}\n\n'
            f'[head]\ntype = "mlic_heads::GapLinear"\nnum_classes = {num_classes}\n')


def kdhost_state(model, with_classifier):
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("fc."):
            if with_classifier:
                state["head." + name] = tensor.detach().clone().contiguous()
        else:
            state["backbone." + name] = tensor.detach().clone().contiguous()
    return state


def main(argv):
    args = parse_args(argv)
    if args.num_classes is not None and args.num_classes < 1:
        fail("--num-classes must be at least 1")
    if args.perturb_norm and args.weights is not None:
        fail("--perturb-norm is for random initialisation only (--random-seed)")
    model, categories = build_model(args)
    if args.perturb_norm:
        perturb_norm(model, args.random_seed)
    model.eval()

    classifier_classes = model.fc.out_features
    num_classes = args.num_classes or classifier_classes
    class_names = []
    if args.class_names:
        with open(args.class_names, encoding="utf-8") as f:
            class_names = [line.strip() for line in f if line.strip()]
        if len(class_names) != num_classes:
            fail(f"{args.class_names} has {len(class_names)} names but the head has "
                 f"{num_classes} classes")
    elif categories is not None and len(categories) == num_classes:
        class_names = categories

    with_classifier = not args.backbone_only and num_classes == classifier_classes
    if not args.backbone_only and not with_classifier:
        print(f"export_torchvision: the {classifier_classes}-way classifier does not fit "
              f"{num_classes} classes; exporting the backbone only", file=sys.stderr)

    depth, groups, width_per_group = backbone_table(model)
    export = {
        "format": EXPORT_FORMAT,
        "model_config": model_config(depth, groups, width_per_group, num_classes),
        "class_names": class_names,
        "state_dict": kdhost_state(model, with_classifier),
        # The layout kdhost writes: values by name and their order (none here).
        "metrics": {"values": {}, "order": []},
        "stage": "torchvision",
        "step": 0,
    }
    torch.save(export, args.out)

    if args.save_io:
        generator = torch.Generator().manual_seed(args.io_seed)
        image = torch.randn(args.batch_size, 3, args.input_size, args.input_size,
                            generator=generator)
        with torch.no_grad():
            logits = model(image)
        torch.save({"input": image, "logits": logits}, args.save_io)

    print(f"{args.out}: {args.arch} as core::BackboneHead(resnet::ResNet depth {depth}, groups "
          f"{groups}, width_per_group {width_per_group}; mlic_heads::GapLinear {num_classes} "
          f"classes), {len(export['state_dict'])} tensors"
          f"{'' if with_classifier else ', no classifier'}")


if __name__ == "__main__":
    main(sys.argv[1:])
