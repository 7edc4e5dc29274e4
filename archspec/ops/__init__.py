"""The op registry: every op archspec knows, keyed by the `op:` tag a spec uses."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from archspec.ops.activation import Dropout, Identity, ReLU, Softmax, StochasticDepth
from archspec.ops.base import MatMul, OpBase, Shape, ShapeError, Weights, Window
from archspec.ops.conv import Conv2d
from archspec.ops.linear import Flatten, Linear
from archspec.ops.merge import Add, ChannelPad, Concat
from archspec.ops.norm import BatchNorm2d, LocalResponseNorm
from archspec.ops.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

OP_CLASSES: tuple[type[OpBase], ...] = (
    Conv2d,
    MaxPool2d,
    AvgPool2d,
    AdaptiveAvgPool2d,
    BatchNorm2d,
    LocalResponseNorm,
    ReLU,
    Dropout,
    Identity,
    Softmax,
    StochasticDepth,
    Flatten,
    Linear,
    Add,
    Concat,
    ChannelPad,
)

REGISTRY: dict[str, type[OpBase]] = {cls.model_fields["op"].annotation.__args__[0]: cls for cls in OP_CLASSES}

AnyOp = Annotated[Union[OP_CLASSES], Field(discriminator="op")]  # noqa: UP007
OP_ADAPTER: TypeAdapter[OpBase] = TypeAdapter(AnyOp)

__all__ = [
    "OP_ADAPTER",
    "OP_CLASSES",
    "REGISTRY",
    "AnyOp",
    "MatMul",
    "OpBase",
    "Shape",
    "ShapeError",
    "Weights",
    "Window",
]
