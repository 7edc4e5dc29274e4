"""Make the tiny ONNX fixtures of tests/onnx/ with PyTorch's own exporters (not run by the tests).

    /work/torchvenv/bin/python tests/onnx/make_fixtures.py [--out tests/onnx]

Each net has random weights (seed 0) and a few hundred parameters, so each file is kilobytes; together
they cover every op family archspec imports. Beside each `<name>.onnx` goes `<name>_io.npz` with one
input and PyTorch's output for it, so the tests check the imported forward pass without torch.
This script does not import archspec.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Plain(nn.Module):
    """Conv + BN + ReLU, max/avg pooling (ceil_mode), dropout, flatten, linear, softmax.
    (PyTorch exports LocalResponseNorm as a dozen elementary ops, not as ONNX's LRN.)"""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = nn.Conv2d(4, 6, (3, 1), padding=(1, 0), groups=2)
        self.pool2 = nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(6 * 3 * 3, 5)
        self.prob = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.pool1(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.conv2(x))
        return self.prob(self.fc(self.drop(torch.flatten(x, 1))))


class Branchy(nn.Module):
    """Residual add, concat of branches, global average pooling, x.view(x.size(0), -1), a bias-free
    linear and x @ W + b (MatMul + Add)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch1 = nn.Conv2d(8, 4, 1)
        self.branch2 = nn.Conv2d(8, 4, 3, padding=2, dilation=2)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(8, 6, bias=False)
        self.w2 = nn.Parameter(torch.randn(6, 3))
        self.b2 = nn.Parameter(torch.randn(3))

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.body(x))
        x = torch.cat([self.branch1(x), self.branch2(x)], 1)
        x = self.pool(x)
        x = x.view(x.size(0), -1)
        return torch.relu(self.fc1(x)) @ self.w2 + self.b2


class Modern(nn.Module):
    """The newer families: ReLU6, Hardswish, Hardsigmoid, SiLU, GELU (erf), a squeeze-and-excitation
    gate (mul), a channel shuffle and chunk (ShuffleNetV2), ConvNeXt's Permute-LayerNorm-Linear-GELU-
    Linear-Permute with a layer scale, and a LayerNorm on flat features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU6()
        self.act2 = nn.Hardswish()
        self.act3 = nn.SiLU()
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se_fc = nn.Conv2d(8, 8, 1)
        self.se_gate = nn.Hardsigmoid()
        self.norm = nn.LayerNorm(8, eps=1e-6)
        self.pw1 = nn.Linear(8, 16)
        self.gelu = nn.GELU()
        self.pw2 = nn.Linear(16, 8)
        self.layer_scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.sig = nn.Sigmoid()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat_norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.act3(self.act2(self.act1(self.conv(x))))
        x = x * self.se_gate(self.se_fc(self.se_pool(x)))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.sig(b)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)  # channel shuffle
        y = x.permute(0, 2, 3, 1)
        y = self.pw2(self.gelu(self.pw1(self.norm(y))))
        x = x + self.layer_scale * y.permute(0, 3, 1, 2)
        return self.fc(self.flat_norm(torch.flatten(self.pool(x), 1)))


class GeluTanh(nn.Module):
    """GELU's tanh approximation, which ONNX's Gelu only has from opset 20: below it both exporters write
    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) out (x^3 as x * x * x or as Pow)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.GELU(approximate="tanh")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.act(self.conv(x))), 1))


class ImageNorm(nn.Module):
    """nn.LayerNorm over a whole C x H x W map (weight and bias per element): LayerNormalization, axis -3."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm([4, 4, 4])
        self.fc = nn.Linear(4 * 4 * 4, 3)
        with torch.no_grad():  # non-trivial affine parameters (PyTorch starts at 1 and 0)
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.norm(self.conv(x))), 1))


def randomize_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def export(model, name, out: Path, shape, dynamo: bool, preserve_bn: bool = False, opset: int = 18) -> None:
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        y = model(x)
    kwargs = {"input_names": ["x"], "output_names": ["y"], "opset_version": opset, "dynamo": dynamo}
    if preserve_bn:
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
        kwargs["do_constant_folding"] = False
    if dynamo:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
        kwargs["external_data"] = False
    else:
        kwargs["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    torch.onnx.export(model, (x,), str(out / f"{name}.onnx"), **kwargs)
    np.savez(out / f"{name}_io.npz", x=x.numpy(), y=y.numpy())
    print(f"{name}: {(out / f'{name}.onnx').stat().st_size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).parent))
    out = Path(parser.parse_args().out)
    torch.manual_seed(0)
    plain = Plain()
    randomize_bn(plain)
    export(plain, "plain_bn_folded", out, (3, 16, 16), dynamo=False)
    export(plain, "plain_bn_preserved", out, (3, 16, 16), dynamo=False, preserve_bn=True)
    export(plain, "plain_dynamo", out, (3, 16, 16), dynamo=True)
    torch.manual_seed(0)
    export(Branchy(), "branchy", out, (3, 8, 8), dynamo=False)
    export(Branchy(), "branchy_dynamo", out, (3, 8, 8), dynamo=True)
    torch.manual_seed(0)
    export(Modern(), "modern", out, (3, 8, 8), dynamo=False)
    export(Modern(), "modern_dynamo", out, (3, 8, 8), dynamo=True)
    torch.manual_seed(0)
    export(GeluTanh(), "gelu_tanh", out, (3, 6, 6), dynamo=False, opset=17)
    export(GeluTanh(), "gelu_tanh_dynamo", out, (3, 6, 6), dynamo=True)
    torch.manual_seed(0)
    export(ImageNorm(), "layer_norm_image", out, (3, 8, 8), dynamo=False)
    export(ImageNorm(), "layer_norm_image_dynamo", out, (3, 8, 8), dynamo=True)


if __name__ == "__main__":
    main()
