"""JSON Schema for spec files, for editor completion (`# yaml-language-server: $schema=...`)."""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

from archspec.ops import AnyOp
from archspec.spec.schema import BlockDef, Metadata, StochasticDepthSchedule
from archspec.spec.schema import BlockUse as _BlockUse

NodeEntry = Union[AnyOp, _BlockUse]  # noqa: UP007


class _EditorBlockDef(BlockDef):
    nodes: list[dict[str, Any]] = Field(min_length=1, description="Nodes; values may be '$param'")


class SpecSchema(BaseModel):
    """An archspec model spec."""

    model_config = ConfigDict(extra="forbid", title="archspec spec")
    name: str
    input: list[int] = Field(min_length=3, max_length=3, description="C, H, W")
    metadata: Metadata | None = None
    include: list[str] = Field(default_factory=list, description="Block libraries, relative paths")
    blocks: dict[str, _EditorBlockDef] = Field(default_factory=dict)
    stochastic_depth: StochasticDepthSchedule | None = None
    nodes: list[NodeEntry]
    outputs: list[str] | None = None
    train_outputs: list[str] = Field(default_factory=list)


def spec_json_schema() -> dict:
    schema = SpecSchema.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
