#!/usr/bin/env python3
"""PyTorch eager reference of kdhost's training step, for comparing `kdhost train --bench` figures
with plain PyTorch on the same machine.

What it measures
----------------
For one "row" (a stage of one of kdhost's configs) it builds the stage's student (and, for a
distilled stage, its frozen teachers) in plain PyTorch, creates ONE synthetic batch on the device
(images uniform in [0, 1); labels of the task's form) and runs `--steps` training steps on it:
forward pass and losses (teacher forward passes and the distiller included), backward pass, and
the optimizer phase (fp16 unscale / inf check, optimizer step, learning-rate / momentum schedule for
the next step, EMA update, zero_grad). There is no data loading, so there is no "data" phase;
kdhost's `total` includes its data phase, this script's does not.

Timing is that of kdhost's `--bench` (framework/src/host/train/bench_timer.cpp, stage_loop.cpp):
the first min(2, steps // 4) steps are warm-up and untimed; each phase of a timed step ends with
torch.cuda.synchronize() on CUDA. On CUDA the timed steps also run under
torch.cuda.set_sync_debug_mode("warn"), and every "synchronizing CUDA operation" warning is counted
as one host synchronisation (the timer's own synchronize calls are made with the mode off, so they
are not counted). The peak memory is torch.cuda.max_memory_allocated() after the steps, with the
peak reset before the first one.

How it matches kdhost
---------------------
* Models (architecture and parameter count exactly kdhost's):
  - core::BackboneHead = backbone -> mlic_heads::GapLinear (framework/src/host/builtins_model.cpp,
    plugins/mlic_heads/gap_linear.cpp: mean over H, W, then Linear `fc`; dropout 0 in the configs).
  - resnet::ResNet with the ImageNet stem (plugins/resnet/resnet.cpp) is torchvision's ResNet
    without fc; backbone + GapLinear is therefore torchvision's resnet18 / resnet101 with `fc`
    sized to the labels (torchvision's avgpool + flatten is the same mean) and, for 1-channel
    input, `conv1` with one input channel. These rows use torchvision.models.
  - resnet::ResNet with stem = "deep" and output_stride = 8 (CIRKD's ResNetV1b deep stem, dilated
    layer3 / layer4, also for basic blocks, which torchvision refuses) is written here
    (DilatedResNet), as are resnet::SmallCNN (plugins/resnet/small_cnn.cpp) and the segmentation
    model seg_heads::EncoderDecoder with seg_heads::DeepLabV3 and seg_heads::FCNHead
    (plugins/seg_heads/encoder_decoder.cpp, decode_heads.cpp).
* Losses and distillers, the same formulas in the same precision (under autocast, as kdhost
  computes them inside its autocast scope, framework/src/host/train/stage_loop.cpp ComputeTerms):
  mlic_heads::BCE (bce_loss.cpp), mlic_heads::ASL (asl_loss.cpp), distillers::KD multilabel,
  distillers::LogitMSE, distillers::PixelKD (plugins/distillers/logit_distillers.cpp,
  plugins/common/logit_losses/logit_losses.cpp), seg_heads::CrossEntropy
  (cross_entropy_loss.cpp, plugins/common/seg_losses/seg_losses.cpp), psd::PSD
  (plugins/psd/psd_distiller.cpp, psd_loss.cpp) and rdd::RDD (plugins/rdd/rdd_distiller.cpp,
  rdd_loss.cpp). The terms are summed in float32 (StageTrainer::SumTerms).
* Optimizers and schedules as framework/src/host/builtins_optim.cpp builds them: decay and
  no-decay groups (no_decay_1d: parameters with <= 1 dimension get no weight decay), coupled L2 for
  Adam, decoupled for AdamW; Cosine with linear warm-up, OneCycle (lr and Adam's beta1 cycled),
  Poly. The schedule's values depend on the stage's full length (its epochs x batches per epoch,
  or max_iters), as in `kdhost train --bench`, whose steps count from 0.
* AMP as framework/src/host/train/amp.*: autocast on CUDA only (ignored on the CPU, as kdhost
  ignores it), fp16 with loss scaling (torch.amp.GradScaler: initial scale 2^16, growth 2 every
  2000 finite steps, backoff 0.5, the step skipped on inf/NaN), bf16 without.
* EMA as framework/src/host/train/ema.cpp: every parameter then every buffer of the student,
  floating-point ones averaged (avg = d * avg + (1 - d) * w) after every optimizer step (also a
  skipped one), integer ones (num_batches_tracked) copied.
* Teachers: frozen (requires_grad False), eval mode, forward under torch.no_grad()
  (framework/src/host/teacher.cpp), inside the same autocast scope as the student.

Where this reference is plain PyTorch rather than a copy of kdhost's implementation (same values):
* the optimizers are torch.optim's with their defaults (foreach kernels on CUDA); LibTorch's C++
  optimizers, which kdhost uses, update one parameter at a time;
* the EMA uses torch._foreach_mul_ / _foreach_add_ rather than one mul_/add_ per tensor;
* kdhost's checks that cost a host synchronisation are not repeated: the finite-loss check after
  the forward pass (StageTrainer::CheckFinite: one copy of the loss terms to the host per step)
  and the label-range checks of seg_losses::CheckLabels (one .item() per call);
* constants that kdhost copies to the device every step are made on the device once: PSD's label
  indices of each group (psd_loss.cpp AssembleTeacherLogits) and the RDD class weights
  (seg_losses.cpp MeanCrossEntropy);
* OHEM's per-chunk threshold max(thresh, k-th smallest) stays a device tensor, where kdhost reads
  it to the host (seg_losses.cpp HardPixels, one .item() per chunk of images);
* ReLUs are in place (torchvision's convention); kdhost's are out of place;
* the learning rate / momentum of step k+1 are set at the end of step k (in the optimizer phase),
  where kdhost sets those of step k at its start (in its forward phase): the same values.

Usage
-----
  torch_reference.py ROW [--device cpu|cuda] [--amp off|bf16|fp16] [--channels-last]
                     [--steps N] [--batch B] [--image-size H W] [--json FILE] [--list]
e.g.  .venv/bin/python bench/torch_reference.py psd.student --device cuda --json psd_student.json
      .venv/bin/python bench/torch_reference.py rdd.student_rdd --steps 3 --batch 2 \\
          --image-size 64 128 --device cpu        # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

Terms = Dict[str, torch.Tensor]

# ---- models --------------------------------------------------------------------------------------


def init_like_torchvision(module: nn.Module) -> None:
    """resnet/init.h InitLikeTorchvision: kaiming_normal_(fan_out, relu) convs, BN weight 1 bias 0
    (kdhost applies it to its backbones only; the heads keep torch's default initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1,
         bias: bool = False) -> nn.Conv2d:
    """A convolution padded to keep the size ("same" for stride 1), as kdhost's Conv helpers."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=dilation * (kernel // 2),
                     dilation=dilation, bias=bias)


class SmallCNN(nn.Module):
    """resnet::SmallCNN (plugins/resnet/small_cnn.cpp): per stage conv3x3-BN-ReLU-conv3x3-BN-ReLU
    and a 2x2 max-pool, convolutions without bias; the output of the last stage is returned."""

    def __init__(self, in_channels: int, channels: Sequence[int]):
        super().__init__()
        self.stages = nn.Sequential()
        for i, c in enumerate(channels):
            self.stages.add_module(f"stage{i + 1}", nn.Sequential(
                conv(in_channels, c, 3), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                conv(c, c, 3), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            in_channels = c
        self.out_channels = in_channels
        init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class GapLinear(nn.Module):
    """mlic_heads::GapLinear (plugins/mlic_heads/gap_linear.cpp): mean over H and W, Linear `fc`
    (dropout is 0 in every config here)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


class BackboneHead(nn.Module):
    """core::BackboneHead (framework/src/host/builtins_model.cpp) for a backbone whose deepest
    feature the head reads; returns the logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def torchvision_resnet(depth: int, in_channels: int, num_classes: int) -> nn.Module:
    """core::BackboneHead(resnet::ResNet depth, ImageNet stem, in_channels) +
    GapLinear(num_classes): torchvision's ResNet with `fc` over the labels and, unless the input is
    RGB, conv1 for `in_channels` (resnet.cpp: conv1 = Conv(in_channels, 64, 7, 2), no bias)."""
    builders = {18: torchvision.models.resnet18, 101: torchvision.models.resnet101}
    model = builders[depth](weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


class BasicBlock(nn.Module):
    """resnet.cpp BasicBlockImpl: two 3x3 convolutions, the first strided, BOTH dilated (which
    torchvision refuses; mmsegmentation's choice, so that ResNet-18 has output stride 8)."""
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, dilation: int,
                 downsample: Optional[nn.Module]):
        super().__init__()
        self.conv1 = conv(in_ch, planes, 3, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """resnet.cpp BottleneckImpl (torchvision's v1.5 bottleneck, groups 1, width 64): 1x1, strided
    and dilated 3x3, 1x1 to 4x planes."""
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, dilation: int,
                 downsample: Optional[nn.Module]):
        super().__init__()
        self.conv1 = conv(in_ch, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class DilatedResNet(nn.Module):
    """resnet::ResNet with stem = "deep" (plugins/resnet/resnet.cpp): conv3x3/2 in->64, conv3x3
    64->64, conv3x3 64->128, each with BN and ReLU, then a 3x3/2 max-pool; layer1 therefore takes
    128 channels (a projection shortcut even for basic blocks). output_stride 8 / 16 dilate
    layer3+layer4 / layer4 instead of striding them; a dilated layer's first block keeps the
    previous dilation (torchvision's _make_layer). Returns (layer3, layer4)."""

    BLOCKS = {18: (BasicBlock, (2, 2, 2, 2)), 101: (Bottleneck, (3, 4, 23, 3))}
    STEM_CHANNELS = 128

    def __init__(self, depth: int, in_channels: int = 3, output_stride: int = 8):
        super().__init__()
        block, counts = self.BLOCKS[depth]
        self.conv1 = conv(in_channels, 64, 3, 2)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = conv(64, 64, 3)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = conv(64, self.STEM_CHANNELS, 3)
        self.bn3 = nn.BatchNorm2d(self.STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        dilate = (False, False, output_stride == 8, output_stride <= 16)
        in_ch, dilation = self.STEM_CHANNELS, 1
        self.channels = []
        for stage in range(4):
            planes = 64 << stage
            out_ch = planes * block.expansion
            stride = 1 if stage == 0 else 2
            previous_dilation = dilation
            if dilate[stage]:
                dilation *= stride
                stride = 1
            downsample = None
            if stride != 1 or in_ch != out_ch:
                downsample = nn.Sequential(conv(in_ch, out_ch, 1, stride), nn.BatchNorm2d(out_ch))
            blocks = [block(in_ch, planes, stride, previous_dilation, downsample)]
            blocks += [block(out_ch, planes, 1, dilation, None) for _ in range(1, counts[stage])]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            in_ch = out_ch
            self.channels.append(out_ch)
        init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        x = self.layer2(self.layer1(x))
        layer3 = self.layer3(x)
        return layer3, self.layer4(layer3)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(conv(in_ch, out_ch, kernel, dilation=dilation), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


def resize_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize with align_corners = True, kdhost's `Up` (seg_losses::Upsample, ResizeTo);
    the tensor itself when the size already matches."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    """decode_heads.cpp AsppImpl (torchvision's ASPP): a 1x1 branch, a dilated 3x3 branch per rate
    and an image-pooling branch (resized back with align_corners = True), concatenated, projected
    to `channels` by 1x1-BN-ReLU, dropout 0.5."""

    def __init__(self, in_ch: int, channels: int, rates: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList([conv_bn_relu(in_ch, channels, 1)])
        self.convs.extend(conv_bn_relu(in_ch, channels, 3, rate) for rate in rates)
        self.convs.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), conv(in_ch, channels, 1),
                                        nn.BatchNorm2d(channels), nn.ReLU(inplace=True)))
        self.project = conv_bn_relu(channels * len(self.convs), channels, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [branch(x) for branch in self.convs]
        branches[-1] = resize_to(branches[-1], x.shape[-2], x.shape[-1])
        return self.dropout(self.project(torch.cat(branches, 1)))


class DeepLabV3Head(nn.Module):
    """seg_heads::DeepLabV3 (decode_heads.cpp): ASPP -> 3x3 conv (no bias) -> BN -> ReLU ->
    dropout 0.1 (CIRKD's; torchvision's DeepLabHead has none) -> 1x1 classifier with bias."""

    def __init__(self, in_ch: int, num_classes: int, rates: Sequence[int], channels: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        self.aspp = ASPP(in_ch, channels, rates)
        self.conv = conv(channels, channels, 3)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = conv(channels, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(self.aspp(x))))
        return self.classifier(self.dropout(x))


class FCNHead(nn.Module):
    """seg_heads::FCNHead (decode_heads.cpp, torchvision's FCNHead): 3x3 conv to in/4 (no bias) ->
    BN -> ReLU -> dropout 0.1 -> 1x1 classifier with bias."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        inner = max(1, in_ch // 4)
        self.conv = conv(in_ch, inner, 3)
        self.bn = nn.BatchNorm2d(inner)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = conv(inner, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.relu(self.bn(self.conv(x)))))


class EncoderDecoder(nn.Module):
    """seg_heads::EncoderDecoder (encoder_decoder.cpp) as configs/rdd/cityscapes_dlv3r101_to_dlv3r18
    builds it: a deep-stem dilated ResNet (output stride 8), DeepLabV3 on layer4 (`logits`) and the
    FCN aux head on layer3 (`aux_logits`), both at feature resolution. Returns (logits, aux)."""

    def __init__(self, depth: int, num_classes: int, rates: Sequence[int] = (12, 24, 36)):
        super().__init__()
        self.backbone = DilatedResNet(depth, output_stride=8)
        self.decode_head = DeepLabV3Head(self.backbone.channels[3], num_classes, rates)
        self.aux_head = FCNHead(self.backbone.channels[2], num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        layer3, layer4 = self.backbone(x)
        return self.decode_head(layer4), self.aux_head(layer3)


# ---- losses and distillers -----------------------------------------------------------------------


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mlic_heads::BCE, reduction "mean", in float32 (bce_loss.cpp; with no -1 labels its masked
    mean is the plain mean)."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels)


def asl(logits: torch.Tensor, labels: torch.Tensor, gamma_neg: float = 4.0,
        gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    """mlic_heads::ASL, reduction "sum" (asl_loss.cpp, the official AsymmetricLoss with
    disable_torch_grad_focal_loss): probability shifting of negatives, asymmetric focusing with the
    focusing weight a constant for autograd; in float32."""
    x = logits.float()
    p = torch.sigmoid(x)
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    log_likelihood = (labels * torch.log(p.clamp(min=eps))
                      + (1 - labels) * torch.log(p_neg.clamp(min=eps)))
    with torch.no_grad():
        p_t = p * labels + p_neg * (1 - labels)
        focusing = torch.pow(1 - p_t, gamma_pos * labels + gamma_neg * (1 - labels))
    return -(log_likelihood * focusing).sum()


def multilabel_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """distillers::KD mode = "multilabel" (logit_losses.cpp MultiLabelKd): per label the binary KL
    of the teacher's sigmoid from the student's, mean over B*K, times T^2."""
    s, t = student / temperature, teacher.detach() / temperature
    log_p, log_not_p = F.logsigmoid(t), F.logsigmoid(-t)
    log_q, log_not_q = F.logsigmoid(s), F.logsigmoid(-s)
    kl = log_p.exp() * (log_p - log_q) + log_not_p.exp() * (log_not_p - log_not_q)
    return kl.mean() * temperature ** 2


def logit_mse_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """distillers::LogitMSE reduction = "sum" (logit_losses.cpp LogitMse); also PSD's D
    (psd_loss.cpp SummedSquaredError)."""
    return (student - teacher.detach()).pow(2).sum()


def pixel_kd(student: torch.Tensor, teacher: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
    """distillers::PixelKD (logit_losses.cpp PixelKd, CIRKD's CriterionKD): KL(teacher || student)
    of the softmax over classes, summed, divided by B*h*w, times T^2; the teacher resized to the
    student's resolution when they differ."""
    teacher = resize_to(teacher, student.shape[-2], student.shape[-1])
    log_q = torch.log_softmax(student / temperature, 1)
    log_p = torch.log_softmax(teacher.detach() / temperature, 1)
    pixels = student.shape[0] * student.shape[2] * student.shape[3]
    return (log_p.exp() * (log_p - log_q)).sum() / pixels * temperature ** 2


def mean_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                       class_weights: Optional[torch.Tensor] = None,
                       selected: Optional[torch.Tensor] = None) -> torch.Tensor:
    """seg_losses::MeanCrossEntropy: sum(w_y * CE) / sum(w_y) over the labelled (and selected)
    pixels, 0 (not NaN) when none is; logits already at label size."""
    use = target != ignore_index
    if selected is not None:
        use = use & selected
    safe_target = torch.where(use, target, torch.zeros_like(target))
    ce = F.cross_entropy(logits, safe_target, reduction="none")
    w = use.to(ce.dtype)
    if class_weights is not None:
        w = w * class_weights.to(ce.dtype)[safe_target]
    denominator = w.sum()
    return (ce * w).sum() / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def seg_cross_entropy(logits: torch.Tensor, aux: torch.Tensor, target: torch.Tensor,
                      aux_weight: float = 0.4) -> Terms:
    """seg_heads::CrossEntropy (cross_entropy_loss.cpp): the CE of the main logits and aux_weight x
    that of the aux logits, both resized to the labels; ignore index 255."""
    h, w = target.shape[-2:]
    return {"loss.ce": mean_cross_entropy(resize_to(logits, h, w), target),
            "loss.ce_aux": aux_weight * mean_cross_entropy(resize_to(aux, h, w), target)}


def hard_pixels(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                thresh: float = 0.7, min_kept: int = 100000, chunk_images: int = 4) -> torch.Tensor:
    """seg_losses::HardPixels (OHEM as CIRKD's / RDD's OhemCrossEntropy2d), per chunk of
    `chunk_images` images: g = softmax probability of the labelled class (1 at ignored pixels),
    k = min(N, min_kept), a labelled pixel is hard when g <= max(thresh, k-th smallest g). The
    threshold stays on the device (kdhost reads it with .item()). No gradient; bool [B, H, W]."""
    with torch.no_grad():
        labelled = target != ignore_index
        safe_target = torch.where(labelled, target, torch.zeros_like(target))
        prob = torch.softmax(logits.detach().float(), 1).gather(1, safe_target.unsqueeze(1))
        g = torch.where(labelled, prob.squeeze(1), torch.ones_like(target, dtype=torch.float))
        hard = []
        for begin in range(0, target.shape[0], chunk_images):
            part = g[begin:begin + chunk_images]
            threshold = thresh
            if min_kept > 0:
                k = min(part.numel(), min_kept)
                threshold = torch.clamp(part.reshape(-1).kthvalue(k).values, min=thresh)
            hard.append(labelled[begin:begin + chunk_images] & (part <= threshold))
        return torch.cat(hard)


def rdd_head_tse(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
                 class_weights: torch.Tensor) -> torch.Tensor:
    """rdd_distiller.cpp HeadTse: the class-weighted CE of one student head over the pixels hard for
    exactly one of student and teacher (rdd_loss.cpp TseSelection with selection = "xor"), the
    logits resized to the labels. (kdhost resizes the student's logits twice, once detached for
    the selection; here the resized tensor is reused, detached, for the selection.)"""
    h, w = target.shape[-2:]
    up = resize_to(student, h, w)
    selected = hard_pixels(up, target) ^ hard_pixels(resize_to(teacher.detach(), h, w), target)
    return mean_cross_entropy(up, target, class_weights=class_weights, selected=selected)


# The 19 Cityscapes class weights of the official RDD / CIRKD OHEM loss (seg_losses.cpp
# CityscapesClassWeights), which rdd::RDD's class_weights = "auto" picks for Cityscapes.
CITYSCAPES_CLASS_WEIGHTS = [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
                            1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865,
                            1.1529, 1.0507]


# ---- optimizers, schedules, EMA ------------------------------------------------------------------


@dataclasses.dataclass
class OptimizerSpec:
    """train.optimizer of the config (builtins_optim.cpp)."""
    kind: str  # "SGD" | "Adam" | "AdamW"
    lr: float
    weight_decay: float
    no_decay_1d: bool = False
    momentum: float = 0.9  # SGD
    betas: Tuple[float, float] = (0.9, 0.999)  # Adam, AdamW
    eps: float = 1e-8


def make_optimizer(model: nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """MakeOptimizer: trainable parameters in model order, a weight-decay group and (no_decay_1d)
    a group of the parameters with <= 1 dimension without weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if spec.no_decay_1d and p.dim() <= 1 else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": spec.weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if spec.kind == "SGD":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[spec.kind]
    return cls(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)


@dataclasses.dataclass
class ScheduleSpec:
    """train.scheduler of the config: the factor of the base learning rate at optimizer step
    `step` (0-based) of `total` and, for OneCycle, the momentum / beta1 (builtins_optim.cpp)."""
    kind: str  # "Cosine" | "OneCycle" | "Poly"
    warmup_iters: int = 0  # Cosine, Poly: linear warm-up from warmup_ratio
    warmup_ratio: float = 0.001
    min_factor: float = 0.0
    power: float = 0.9  # Poly
    pct_start: float = 0.3  # OneCycle
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def lr_factor(self, step: int, total: int) -> float:
        if self.kind == "OneCycle":
            initial = 1.0 / self.div_factor
            return self._one_cycle(step, total, initial, 1.0, initial / self.final_div_factor)
        fraction = min(1.0, step / total) if total > 0 else 0.0
        if self.kind == "Cosine":
            cosine = 0.5 * (1 + math.cos(math.pi * fraction))
            factor = self.min_factor + (1 - self.min_factor) * cosine
        else:  # Poly
            factor = max(self.min_factor, (1 - fraction) ** self.power)
        if step < self.warmup_iters:
            factor *= self.warmup_ratio + (1 - self.warmup_ratio) * step / self.warmup_iters
        return factor

    def momentum(self, step: int, total: int) -> Optional[float]:
        if self.kind != "OneCycle":
            return None
        return self._one_cycle(step, total, self.max_momentum, self.base_momentum,
                               self.max_momentum)

    def _one_cycle(self, step: int, total: int, start: float, peak: float, end: float) -> float:
        """torch's OneCycleLR with cosine annealing, as OneCycleSchedule::Interpolate."""
        up_end = self.pct_start * total - 1.0
        down_end = total - 1.0

        def anneal(a: float, b: float, pct: float) -> float:
            return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0)

        if step <= up_end:
            return anneal(start, peak, step / up_end if up_end > 0 else 1.0)
        span = down_end - up_end
        return anneal(peak, end, min(1.0, (step - up_end) / span) if span > 0 else 1.0)


def apply_schedule(optimizer: torch.optim.Optimizer, spec: OptimizerSpec,
                   schedule: ScheduleSpec, step: int, total: int) -> None:
    """OptimWrapper::ApplySchedule: every group's lr = base lr x factor; OneCycle's momentum as SGD
    momentum or Adam's beta1."""
    lr = spec.lr * schedule.lr_factor(step, total)
    momentum = schedule.momentum(step, total)
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None:
            if spec.kind == "SGD":
                group["momentum"] = momentum
            else:
                group["betas"] = (momentum, group["betas"][1])


class ModelEma:
    """framework/src/host/train/ema.cpp ModelEma: an average of every parameter and buffer."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        with torch.no_grad():
            current = list(model.parameters()) + list(model.buffers())
            self.current_float = [t for t in current if t.is_floating_point()]
            self.current_other = [t for t in current if not t.is_floating_point()]
            self.average_float = [t.detach().clone() for t in self.current_float]
            self.average_other = [t.detach().clone() for t in self.current_other]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_mul_(self.average_float, self.decay)
        torch._foreach_add_(self.average_float, self.current_float, alpha=1.0 - self.decay)
        for avg, cur in zip(self.average_other, self.current_other):
            avg.copy_(cur)


# ---- the rows ------------------------------------------------------------------------------------

# A row's objective: (student, teachers, images, targets) -> loss terms, run inside autocast.
Objective = Callable[[nn.Module, List[nn.Module], torch.Tensor, torch.Tensor], Terms]


@dataclasses.dataclass
class Row:
    """One stage of a kdhost config as this script reproduces it."""
    config: str
    task: str  # "multilabel" | "segmentation"
    in_channels: int
    image_size: Tuple[int, int]
    batch: int
    num_classes: int
    student: Callable[[], nn.Module]
    teachers: Callable[[], List[nn.Module]]
    objective: Objective
    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    # The stage's length, which the schedule depends on: epochs x (training samples // batch), or
    # max_iters (epochs = 0).
    epochs: int
    train_samples: int = 0
    max_iters: int = 0
    ema_decay: float = 0.0
    amp: str = "off"
    labels_per_image: float = 2.9  # multilabel: expected positives per image
    note: str = ""

    def total_steps(self, batch: int) -> int:
        if self.epochs == 0:
            return self.max_iters
        return self.epochs * max(1, self.train_samples // batch)


def quickstart_rows() -> Dict[str, Row]:
    """configs/quickstart/kd_multilabel.toml with _base_/runtime.toml (loader.batch_size 64),
    _base_/datasets/fmnist_multilabel.toml (fmnist_tasks::MultiLabelMosaic, grid 2: 1 x 56 x 56
    images, 10 labels, 4000 training mosaics, 2-4 items each; drop_last: 62 batches per epoch) and
    _base_/schedules/adamw_cosine.toml (AdamW lr 0.002, weight decay 1e-4 on weights only, cosine
    with 30 steps of linear warm-up). Student: SmallCNN(1, [8, 16, 32]) + GapLinear(10), 6 epochs;
    teacher: ResNet-18 (1 input channel) + GapLinear(10), 8 epochs; loss BCE (mean);
    student_kd: + distillers::KD multilabel, T = 1, weight 1, teacher frozen in eval mode."""

    def student() -> nn.Module:
        backbone = SmallCNN(1, [8, 16, 32])
        return BackboneHead(backbone, GapLinear(backbone.out_channels, 10))

    def teacher() -> nn.Module:
        return torchvision_resnet(18, 1, 10)

    def plain(model, teachers, images, labels) -> Terms:
        return {"loss.bce": bce(model(images), labels)}

    def kd(model, teachers, images, labels) -> Terms:
        logits = model(images)
        terms = {"loss.bce": bce(logits, labels)}
        with torch.no_grad():
            teacher_logits = teachers[0](images)
        terms["loss.kd"] = 1.0 * multilabel_kd(logits, teacher_logits, 1.0)
        return terms

    common = dict(config="configs/quickstart/kd_multilabel.toml", task="multilabel", in_channels=1,
                  image_size=(56, 56), batch=64, num_classes=10,
                  optimizer=OptimizerSpec("AdamW", lr=0.002, weight_decay=1e-4, no_decay_1d=True),
                  schedule=ScheduleSpec("Cosine", warmup_iters=30), train_samples=4000,
                  labels_per_image=3.0)
    return {
        "quickstart.teacher": Row(student=teacher, teachers=list, objective=plain, epochs=8,
                                  **common),
        "quickstart.student": Row(student=student, teachers=list, objective=plain, epochs=6,
                                  **common),
        "quickstart.student_kd": Row(student=student, teachers=lambda: [teacher()], objective=kd,
                                     epochs=6, **common),
    }


# PSD's fixed label partitions: 5 contiguous groups of 16 of the 80 labels, for CGP and for DGP
# (the real ones come from the label statistics; their sizes only move columns around).
PSD_GROUPS = [list(range(16 * k, 16 * (k + 1))) for k in range(5)]


def psd_rows() -> Dict[str, Row]:
    """configs/psd/coco2014_r101_448.toml over configs/psd/fmnist_psd.toml and
    _base_/datasets/coco2014_multilabel_448.toml: ResNet-101 (RGB, ImageNet stem) + GapLinear(80) at
    448 x 448, batch 24, 80 epochs of the 82,081 training images of COCO 2014 that have annotations
    (drop_last: 3420 batches each); ASL (gamma_neg 4, gamma_pos 0, clip 0.05, sum); Adam lr 1e-4
    with coupled L2 1e-4 on weights only; OneCycle (pct_start 0.1, div 25, final div 1e4, beta1
    0.95 <-> 0.85); AMP fp16; EMA 0.9997 every step.
    student: ASL alone. student_kd: 0.5 ASL + 0.5 LogitMSE(sum) against the full-label teacher
    (the `student` stage's network), lr 1e-5. student_psd: 0.5 ASL + psd::PSD with alpha 0.5, i.e.
    0.25 D(z, T_CGP) + 0.25 D(z, T_DGP), D the summed squared error, the K = 5 teachers of each
    graph (ResNet-101 + GapLinear over their group's 16 labels, eval mode) scattered back to the 80
    labels (labels in no group would stay 1), lr 1e-5."""

    def network(num_classes: int) -> nn.Module:
        return torchvision_resnet(101, 3, num_classes)

    def plain(model, teachers, images, labels) -> Terms:
        return {"loss.asl": 1.0 * asl(model(images), labels)}

    def kd(model, teachers, images, labels) -> Terms:
        logits = model(images)
        terms = {"loss.asl": 0.5 * asl(logits, labels)}
        with torch.no_grad():
            teacher_logits = teachers[0](images)
        terms["loss.logit_mse"] = 0.5 * logit_mse_sum(logits, teacher_logits)
        return terms

    group_index: Dict[torch.device, List[torch.Tensor]] = {}

    def psd(model, teachers, images, labels) -> Terms:
        logits = model(images)
        terms = {"loss.asl": 0.5 * asl(logits, labels)}
        device = logits.device
        if device not in group_index:  # made on the device once (kdhost: every step)
            group_index[device] = [torch.tensor(g, device=device) for g in PSD_GROUPS]
        z = logits.float()
        k = len(PSD_GROUPS)
        # psd_distiller.cpp: weight alpha/2 for CGP, round(0.5 - alpha/2, 2) for DGP, alpha = 0.5.
        for term, weight, graph_teachers in (("loss.psd_cgp", 0.25, teachers[:k]),
                                             ("loss.psd_dgp", 0.25, teachers[k:])):
            with torch.no_grad():
                outputs = [t(images).float() for t in graph_teachers]
            target = torch.ones(z.shape[0], 80, dtype=torch.float, device=device)
            for index, out in zip(group_index[device], outputs):
                target.index_copy_(1, index, out)
            terms[term] = weight * logit_mse_sum(z, target)
        return terms

    common = dict(config="configs/psd/coco2014_r101_448.toml", task="multilabel", in_channels=3,
                  image_size=(448, 448), batch=24, num_classes=80,
                  schedule=ScheduleSpec("OneCycle", pct_start=0.1, div_factor=25.0,
                                        final_div_factor=1e4),
                  epochs=80, train_samples=82081, ema_decay=0.9997, amp="fp16",
                  labels_per_image=2.9)

    def adam(lr: float) -> OptimizerSpec:
        return OptimizerSpec("Adam", lr=lr, weight_decay=1e-4, no_decay_1d=True)

    return {
        "psd.student": Row(student=lambda: network(80), teachers=list, objective=plain,
                           optimizer=adam(1e-4), **common),
        "psd.student_kd": Row(student=lambda: network(80), teachers=lambda: [network(80)],
                              objective=kd, optimizer=adam(1e-5), **common),
        "psd.student_psd": Row(student=lambda: network(80),
                               teachers=lambda: [network(len(g)) for g in PSD_GROUPS * 2],
                               objective=psd, optimizer=adam(1e-5), **common),
    }


def rdd_rows() -> Dict[str, Row]:
    """configs/rdd/cityscapes_dlv3r101_to_dlv3r18.toml with
    _base_/datasets/cityscapes_512x1024.toml: EncoderDecoder(deep-stem ResNet-18, output stride 8,
    DeepLabV3 rates 12/24/36, FCN aux head on layer3), 19 classes, 512 x 1024 crops, batch 16,
    40k iterations; SGD lr 0.02, momentum 0.9, weight decay 1e-4 on every parameter; Poly 0.9;
    AMP fp16. Teacher: the same with ResNet-101.
    student: CrossEntropy (ignore 255) of the main logits + 0.4 x the aux logits'.
    student_kd: + distillers::PixelKD (T = 1, weight 1).
    student_rdd: rdd::RDD with its defaults, which replaces the task loss: TFE-RDD for the first
    10% of the iterations, TSE-RDD after. This row benchmarks the TSE phase (the more expensive
    one: four full-resolution softmaxes and OHEM selections per step): loss.rdd = TSE(main) + 0.4
    TSE(aux) with the Cityscapes class weights and the XOR selection (thresh 0.7, min_kept 100000,
    chunks of 4 images), plus loss.kd = PixelKD(T = 1). NB `kdhost train --bench` counts its steps
    from 0, i.e. runs TFE; compare with --set stages.student_rdd.distiller.schedule=tse."""

    def student() -> nn.Module:
        return EncoderDecoder(18, 19)

    def teacher() -> nn.Module:
        return EncoderDecoder(101, 19)

    def plain(model, teachers, images, mask) -> Terms:
        logits, aux = model(images)
        return seg_cross_entropy(logits, aux, mask)

    def kd(model, teachers, images, mask) -> Terms:
        logits, aux = model(images)
        terms = seg_cross_entropy(logits, aux, mask)
        with torch.no_grad():
            teacher_logits, _ = teachers[0](images)  # the teacher's aux head runs too, as in kdhost
        terms["loss.kd"] = 1.0 * pixel_kd(logits, teacher_logits, 1.0)
        return terms

    class_weights: Dict[torch.device, torch.Tensor] = {}

    def rdd_tse(model, teachers, images, mask) -> Terms:
        logits, aux = model(images)
        with torch.no_grad():
            teacher_logits, teacher_aux = teachers[0](images)
        if mask.device not in class_weights:  # made on the device once (kdhost: every call)
            class_weights[mask.device] = torch.tensor(CITYSCAPES_CLASS_WEIGHTS, device=mask.device)
        weights = class_weights[mask.device]
        task = rdd_head_tse(logits, teacher_logits, mask, weights)
        task = task + 0.4 * rdd_head_tse(aux, teacher_aux, mask, weights)
        return {"loss.rdd": task, "loss.kd": 1.0 * pixel_kd(logits, teacher_logits, 1.0)}

    common = dict(config="configs/rdd/cityscapes_dlv3r101_to_dlv3r18.toml", task="segmentation",
                  in_channels=3, image_size=(512, 1024), batch=16, num_classes=19,
                  optimizer=OptimizerSpec("SGD", lr=0.02, weight_decay=1e-4, momentum=0.9),
                  schedule=ScheduleSpec("Poly", power=0.9), epochs=0, max_iters=40000,
                  amp="fp16")
    return {
        "rdd.student": Row(student=student, teachers=list, objective=plain, **common),
        "rdd.student_kd": Row(student=student, teachers=lambda: [teacher()], objective=kd,
                              **common),
        "rdd.student_rdd": Row(student=student, teachers=lambda: [teacher()], objective=rdd_tse,
                               note="TSE-RDD phase", **common),
    }


ROWS: Dict[str, Row] = {**quickstart_rows(), **psd_rows(), **rdd_rows()}


# ---- the synthetic batch -------------------------------------------------------------------------


def synthetic_batch(row: Row, batch: int, size: Tuple[int, int], device: torch.device,
                    channels_last: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uniform in [0, 1) and labels of the task's form, made on the device once (as the
    `synthetic` plugin draws them): multi-hot float labels, each present with probability
    labels_per_image / K and at least one per image; or int64 masks of 32 x 32 blocks of uniform
    classes, 10% of the blocks the ignore label 255."""
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.rand(batch, row.in_channels, *size, generator=g, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    k = row.num_classes
    if row.task == "multilabel":
        labels = (torch.rand(batch, k, generator=g, device=device) < row.labels_per_image / k)
        labels = labels.float()
        none = labels.sum(1) == 0
        pick = torch.randint(0, k, (batch,), generator=g, device=device)
        labels[torch.arange(batch, device=device), pick] += none.float()
        return images, labels
    block = 32
    rows, cols = -(-size[0] // block), -(-size[1] // block)
    blocks = torch.randint(0, k, (batch, rows, cols), generator=g, device=device)
    ignored = torch.rand(batch, rows, cols, generator=g, device=device) < 0.1
    blocks = torch.where(ignored, torch.full_like(blocks, 255), blocks)
    mask = blocks.repeat_interleave(block, 1).repeat_interleave(block, 2)
    return images, mask[:, :size[0], :size[1]].contiguous()


# ---- the benchmark -------------------------------------------------------------------------------


def count(modules: Sequence[nn.Module], trainable_only: bool = False) -> int:
    return sum(p.numel() for m in modules for p in m.parameters()
               if p.requires_grad or not trainable_only)


class SyncCounter:
    """Counts the "synchronizing CUDA operation" warnings of torch.cuda.set_sync_debug_mode("warn")
    while `active`; the phase timer's own synchronize calls run with the mode off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.active = False

    def start(self) -> None:
        if self.enabled:
            torch.cuda.set_sync_debug_mode("warn")
            self.active = True

    def stop(self) -> None:
        if self.enabled:
            torch.cuda.set_sync_debug_mode(0)
            self.active = False

    def synchronize(self) -> None:
        """The timer's torch.cuda.synchronize(), not counted."""
        if self.active:
            torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()
        if self.active:
            torch.cuda.set_sync_debug_mode("warn")


def run(args: argparse.Namespace) -> dict:
    row = ROWS[args.row]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or row.batch
    size = tuple(args.image_size) if args.image_size else row.image_size
    amp = args.amp or row.amp
    autocast = cuda and amp != "off"  # TrainSettings::autocast: only on CUDA
    amp_dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    torch.manual_seed(0)
    student = row.student().to(device, memory_format=memory_format).train()
    teachers = []
    for teacher in row.teachers():
        teacher = teacher.to(device, memory_format=memory_format).eval()
        teacher.requires_grad_(False)
        teachers.append(teacher)
    images, targets = synthetic_batch(row, batch, size, device, args.channels_last)

    optimizer = make_optimizer(student, row.optimizer)
    total_steps = row.total_steps(batch)
    apply_schedule(optimizer, row.optimizer, row.schedule, 0, total_steps)
    scaler = torch.amp.GradScaler("cuda") if autocast and amp == "fp16" else None
    ema = ModelEma(student, row.ema_decay) if row.ema_decay > 0 else None

    syncs = SyncCounter(cuda)
    warmup = min(2, args.steps // 4)
    seconds = [0.0, 0.0, 0.0]  # forward, backward, optimizer
    sync_count = 0
    other_warnings = {}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)

    def lap() -> float:
        if cuda:
            syncs.synchronize()
        return time.perf_counter()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(args.steps):
            timed = step >= warmup
            if timed:
                syncs.start()
            t0 = time.perf_counter()
            # Forward pass and losses (StageTrainer::ComputeTerms), the terms summed in float32.
            with torch.autocast("cuda", dtype=amp_dtype, enabled=autocast):
                terms = row.objective(student, teachers, images, targets)
            total = sum(value.float() for value in terms.values())
            t1 = lap()
            # Backward pass (of the scaled loss with fp16).
            (scaler.scale(total) if scaler else total).backward()
            t2 = lap()
            # Optimizer phase (OptimWrapper::Step, then the EMA): with fp16 unscale, skip on inf and
            # adapt the scale; zero the gradients; the next step's lr / momentum; the EMA update.
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            apply_schedule(optimizer, row.optimizer, row.schedule, step + 1, total_steps)
            if ema:
                ema.update()
            t3 = lap()
            if timed:
                syncs.stop()
                for i, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3))):
                    seconds[i] += b - a
                sync_count += sum("synchroniz" in str(w.message) for w in caught)
            for w in caught:
                if "synchroniz" not in str(w.message):
                    other_warnings.setdefault(str(w.message), w)
            caught.clear()
    for w in other_warnings.values():
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)

    timed_steps = max(1, args.steps - warmup)
    total_seconds = sum(seconds)
    ms = {name: 1e3 * s / timed_steps for name, s in zip(("forward", "backward", "optimizer"),
                                                          seconds)}
    ms["total"] = 1e3 * total_seconds / timed_steps
    return {
        "row": args.row,
        "device": str(device),
        "amp": amp if autocast else "off",
        "channels_last": bool(args.channels_last),
        "batch": batch,
        "image_size": list(size),
        "steps_timed": args.steps - warmup,
        "ms": ms,
        "samples_per_s": (batch * (args.steps - warmup) / total_seconds
                          if total_seconds > 0 else 0.0),
        "parameters": {"student": count([student]),
                       "student_trainable": count([student], trainable_only=True),
                       "teachers": count(teachers)},
        "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)) if cuda else None,
        "host_syncs_per_step": sync_count / timed_steps if cuda else None,
        "torch": torch.__version__,
    }


def report(result: dict, row: Row, requested_amp: str, warmup: int) -> str:
    h, w = result["image_size"]
    ms = result["ms"]
    lines = [
        f"torch_reference: row '{result['row']}' ({row.config}"
        f"{', ' + row.note if row.note else ''}) on {result['device']}, amp {result['amp']}"
        + (f" (requested {requested_amp}; autocast is CUDA only)"
           if requested_amp != result["amp"] else "")
        + f", channels_last {'on' if result['channels_last'] else 'off'}",
        f"  {result['steps_timed']} steps timed (after {warmup} warm-up), batch {result['batch']}"
        f" of {row.in_channels} x {h} x {w}",
    ]
    for name in ("forward", "backward", "optimizer", "total"):
        share = 100.0 * ms[name] / ms["total"] if ms["total"] > 0 else 0.0
        lines.append(f"  {name:<10} {ms[name]:9.2f} ms/step  {share:5.1f}%")
    lines.append(f"  throughput {result['samples_per_s']:.1f} samples/s")
    p = result["parameters"]
    lines.append(f"  parameters: student {p['student']:,} (trainable {p['student_trainable']:,}),"
                 f" teachers {p['teachers']:,}")
    if result["peak_memory_bytes"] is not None:
        lines.append(f"  peak memory {result['peak_memory_bytes'] / 2**30:.2f} GiB,"
                     f" host syncs {result['host_syncs_per_step']:.1f} per step")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="PyTorch eager reference of kdhost's training step (see the module docstring).")
    parser.add_argument("row", nargs="?", help="the row to run (--list shows them)")
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default=None,
                        help="mixed precision on CUDA (default: the config's train.amp)")
    parser.add_argument("--channels-last", action="store_true",
                        help="models (teachers too) and the image batch in channels_last")
    parser.add_argument("--steps", type=int, default=12,
                        help="training steps, the first min(2, steps // 4) untimed (default 12)")
    parser.add_argument("--batch", type=int, default=None, help="override the config's batch size")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="override the config's input size")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    parser.add_argument("--list", action="store_true", help="print the row names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(ROWS))
        return 0
    if args.row not in ROWS:
        parser.error(f"unknown row {args.row!r}; rows: {', '.join(ROWS)}"
                     if args.row else "give a row (--list shows them)")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    result = run(args)
    row = ROWS[args.row]
    print(report(result, row, args.amp or row.amp, args.steps - result["steps_timed"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
