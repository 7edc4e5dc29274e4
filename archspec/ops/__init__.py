"""The op registry: every op archspec knows, keyed by the `op:` tag a spec uses."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from archspec.ops.activation import (
    GELU,
    Dropout,
    DropPath,
    Hardsigmoid,
    Hardswish,
    Identity,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    StochasticDepth,
)
from archspec.ops.base import OP_CONTRACT, MatMul, OpBase, Shape, ShapeError, Weights, Window, contract_gaps
from archspec.ops.channels import ChannelChunk, ChannelShuffle
from archspec.ops.conv import Conv2d
from archspec.ops.linear import Flatten, Linear
from archspec.ops.merge import Add, ChannelPad, Concat, Mul
from archspec.ops.norm import BatchNorm2d, LayerNorm, LayerScale, LocalResponseNorm
from archspec.ops.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

OP_CLASSES: tuple[type[OpBase], ...] = (
    Conv2d,
    MaxPool2d,
    AvgPool2d,
    AdaptiveAvgPool2d,
    BatchNorm2d,
    LocalResponseNorm,
    LayerNorm,
    LayerScale,
    ReLU,
    ReLU6,
    Sigmoid,
    Hardsigmoid,
    Hardswish,
    SiLU,
    GELU,
    Dropout,
    Identity,
    Softmax,
    StochasticDepth,
    DropPath,
    Flatten,
    Linear,
    Add,
    Mul,
    Concat,
    ChannelPad,
    ChannelShuffle,
    ChannelChunk,
)


def _check_contract(classes: tuple[type[OpBase], ...]) -> None:
    gaps = {cls.__name__: contract_gaps(cls) for cls in classes}
    gaps = {name: missing for name, missing in gaps.items() if missing}
    if gaps:
        raise TypeError(f"ops that do not declare all of OP_CONTRACT: {gaps}")


_check_contract(OP_CLASSES)

REGISTRY: dict[str, type[OpBase]] = {cls.model_fields["op"].annotation.__args__[0]: cls for cls in OP_CLASSES}

AnyOp = Annotated[Union[OP_CLASSES], Field(discriminator="op")]  # noqa: UP007


def __getattr__(name: str):
    """OP_ADAPTER (one validator for any op, by its `op:` tag) is built on first use: building it builds
    every op's validator, which the CLI's start-up need not pay (spec loading validates each node with
    its own class, REGISTRY[tag])."""
    if name == "OP_ADAPTER":
        adapter = TypeAdapter(AnyOp)
        globals()["OP_ADAPTER"] = adapter
        return adapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OP_ADAPTER",
    "OP_CLASSES",
    "OP_CONTRACT",
    "REGISTRY",
    "AnyOp",
    "MatMul",
    "OpBase",
    "Shape",
    "ShapeError",
    "Weights",
    "Window",
]
