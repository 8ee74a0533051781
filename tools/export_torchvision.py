#!/usr/bin/env python3
"""Writes a torchvision ResNet, ResNeXt, Wide ResNet or MobileNetV2 as a kdhost model export.

The export is the file kdhost itself writes for a trained model (format "kdhost.model_export.v1",
see docs/training.md): the weights under kdhost's names, the model's config as TOML (a
core::BackboneHead of resnet::ResNet or mobilenet::MobileNetV2 and mlic_heads::GapLinear), the
class names, and empty metrics. A teacher can then be `checkpoint = "file.pt"`.

    python tools/export_torchvision.py --arch resnet101 --weights IMAGENET1K_V2 --out r101.pt
    python tools/export_torchvision.py --arch resnext50_32x4d --random-seed 0 --num-classes 80 \\
        --out x50.pt --save-io x50_io.pt --input-size 64

Names: torchvision's `fc` (MobileNetV2: `classifier.1`) becomes the head's `head.fc`, everything
else moves under `backbone.` unchanged (kdhost's backbones use torchvision's module names). The
classifier is exported only when the class count matches it; --backbone-only leaves it out in any
case.
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
    "mobilenet_v2",
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
        description="Export a torchvision ResNet/ResNeXt/Wide ResNet/MobileNetV2 as a kdhost "
        "model export.")
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
    """Random batch-norm parameters and statistics that keep deep networks' activations in range:
    the running statistics are first measured on random images (as training would, so that every
    layer's output is normalised in eval mode; without residual normalisation, MobileNetV2's
    activations otherwise saturate), then weight in [0.6, 1), bias ~ N(0, 0.1^2), running mean
    shifted by N(0, 0.1^2) standard deviations, running variance scaled by [0.8, 1.2).
    """
    generator = torch.Generator().manual_seed(seed + 1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average over the batch
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64, generator=generator))
        for module, momentum in zip(norms, momenta):
            module.momentum = momentum
            c = module.num_features
            std = module.running_var.sqrt()
            module.weight.copy_(0.6 + 0.4 * torch.rand(c, generator=generator))
            module.bias.copy_(0.1 * torch.randn(c, generator=generator))
            module.running_mean.add_(0.1 * std * torch.randn(c, generator=generator))
            module.running_var.mul_(0.8 + 0.4 * torch.rand(c, generator=generator))
            module.num_batches_tracked.fill_(
                int(torch.randint(1, 1000, (1,), generator=generator)))
    model.eval()


def classifier(model):
    """The final linear layer and its name in torchvision's state dict."""
    if isinstance(model, torchvision.models.MobileNetV2):
        return model.classifier[1], "classifier.1."
    return model.fc, "fc."


def backbone_table(model):
    """The backbone's TOML table, the head's extra options and a summary."""
    if isinstance(model, torchvision.models.MobileNetV2):
        # torchvision's classifier is Dropout(0.2) + Linear on the pooled 1280-channel features.
        return ('type = "mobilenet::MobileNetV2"\nlast_conv = true\n', "dropout = 0.2\n",
                "mobilenet::MobileNetV2 with last_conv")
    bottleneck = isinstance(model.layer1[0], Bottleneck)
    if not bottleneck and not isinstance(model.layer1[0], BasicBlock):
        fail(f"unknown block type {type(model.layer1[0]).__name__}")
    blocks = tuple(len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4))
    depth = DEPTHS.get((bottleneck, blocks))
    if depth is None:
        fail(f"no kdhost ResNet depth has {blocks} blocks per stage")
    return (f'type = "resnet::ResNet"\ndepth = {depth}\ngroups = {model.groups}\n'
            f'width_per_group = {model.base_width}\n', "",
            f"resnet::ResNet depth {depth}, groups {model.groups}, width_per_group "
            f"{model.base_width}")


def model_config(backbone, head_options, num_classes):
    return (f'type = "core::BackboneHead"\n\n[backbone]\n{backbone}\n'
            f'[head]\ntype = "mlic_heads::GapLinear"\nnum_classes = {num_classes}\n'
            f'{head_options}')


def kdhost_state(model, with_classifier):
    state = {}
    prefix = classifier(model)[1]
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            if with_classifier:
                state["head.fc." + name[len(prefix):]] = tensor.detach().clone().contiguous()
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

    classifier_classes = classifier(model)[0].out_features
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

    backbone, head_options, summary = backbone_table(model)
    export = {
        "format": EXPORT_FORMAT,
        "model_config": model_config(backbone, head_options, num_classes),
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

    print(f"{args.out}: {args.arch} as core::BackboneHead({summary}; mlic_heads::GapLinear "
          f"{num_classes} classes), {len(export['state_dict'])} tensors"
          f"{'' if with_classifier else ', no classifier'}")


if __name__ == "__main__":
    main(sys.argv[1:])
