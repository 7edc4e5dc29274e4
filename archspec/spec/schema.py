"""The spec file's structure (everything except the op nodes, which the op registry validates).

A spec is a graph: named nodes whose `inputs` name other nodes. Blocks are templates with named
parameters, instantiated by a node that says `block:` instead of `op:`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archspec.ops.base import PositiveInt

MAX_REPEAT = 1000  # repeat counts beyond this are a typo or an attack, not a network


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class TableRow(Strict):
    """One row of a paper's table, as printed: weights in K = 1024 (biases excluded), ops in M = 10^6."""

    params_k: Annotated[float, Field(ge=0)] | None = None
    ops_m: Annotated[float, Field(ge=0)] | None = None


class Reference(Strict):
    """Published figures for the model, used by reports and golden tests (never by the analysis)."""

    params: PositiveInt | None = None
    macs: PositiveInt | None = None
    gflops: Annotated[float, Field(gt=0)] | None = None
    top1: Annotated[float, Field(gt=0, le=100)] | None = None
    top5: Annotated[float, Field(gt=0, le=100)] | None = None
    receptive_field: PositiveInt | None = None
    # A paper's per-module table (e.g. GoogLeNet Table 1), keyed by layer or block name.
    table: dict[str, TableRow] | None = None
    table_source: str | None = None
    dataset: str | None = None
    notes: str | None = None


class Metadata(Strict):
    """Where the architecture comes from. Optional for a user's own network; every shipped spec cites
    its source (tests/test_blocks.py checks it)."""

    source: str | None = Field(default=None, description="Paper or code this spec reproduces")
    citation: str | None = None
    url: str | None = None
    notes: str | None = None
    reference: Reference | None = None


class StochasticDepthSchedule(Strict):
    """Drop probabilities for every stochastic node (`stochastic_depth`, `drop_path`) without its own,
    one per residual block, blocks in graph order:

    - `schedule: linear` (Huang et al. 2016): block l of L (l = 1..L) survives with probability
      p_l = 1 - (l / L) * (1 - final_survival);
    - `schedule: torchvision` (EfficientNet, ConvNeXt): block i of N (i = 0..N-1) is dropped with
      probability prob * i / N (EfficientNet), or prob * i / (N - 1) with `denominator:
      blocks_minus_one` (ConvNeXt).

    The blocks are the stochastic nodes themselves, unless `blocks` names them by a pattern of node
    name components, `*` matching one component: `features.*.*` makes every `features.<s>.<b>` with
    nodes inside it a block, counted whether or not it has a stochastic node (torchvision counts
    EfficientNet's blocks without a residual connection too).
    """

    schedule: Literal["linear", "torchvision"] = "linear"
    final_survival: Annotated[float, Field(ge=0, le=1)] | None = None  # linear
    prob: Annotated[float, Field(ge=0, le=1)] | None = None  # torchvision
    denominator: Literal["blocks", "blocks_minus_one"] = "blocks"  # torchvision
    blocks: Annotated[str, Field(min_length=1)] | None = None

    def _is_huang(self) -> bool:
        return self.schedule != "torchvision"

    @model_validator(mode="after")
    def _fields_of_the_schedule(self):
        needed, other = ("final_survival", "prob") if self._is_huang() else ("prob", "final_survival")
        if getattr(self, needed) is None:
            raise ValueError(f"a mapping with '{needed}' (schedule '{self.schedule}' needs it)")
        if getattr(self, other) is not None:
            raise ValueError(f"a mapping without '{other}' (schedule '{self.schedule}' uses '{needed}')")
        if self._is_huang() and self.denominator != "blocks":
            raise ValueError("a mapping without 'denominator' (it belongs to schedule 'torchvision')")
        return self

    def drop_probability(self, rank: int, total: int) -> float:
        """Drop probability of block `rank` (0-based, graph order) of `total`."""
        if self._is_huang():  # Huang et al. count blocks from 1
            return (rank + 1) / total * (1.0 - self.final_survival)
        denominator = total - 1 if self.denominator == "blocks_minus_one" else total
        return self.prob * rank / denominator if denominator > 0 else 0.0


class Repeat(Strict):
    count: Annotated[int, Field(ge=1, le=MAX_REPEAT)]
    # How instance names are formed; {i} is the instance index. Default "{i}" (torchvision's
    # layer1.0, layer1.1, ...); DenseNet uses "denselayer{i}" with start 1.
    name: str = "{i}"
    start: Annotated[int, Field(ge=0)] = 0


class BlockUse(Strict):
    """A node that instantiates a block: `block: name`, `args:`, optional `repeat:` and `first:`."""

    name: str
    block: str
    inputs: list[str] | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    # Arguments that differ for the first instance of a repeated block (stride, projection, ...).
    first: dict[str, Any] = Field(default_factory=dict)
    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)] | Repeat | None = None


class BlockDef(Strict):
    """A template: parameter defaults (null = required) and nodes that may use `$param` values.

    Inside a block, `input` is the block's input; `output` names the node whose tensor the block
    returns (default: the last node). A node with `when: $flag` is bypassed when the flag is false.
    """

    params: dict[str, Any] = Field(default_factory=dict)
    nodes: list[dict[str, Any]] = Field(min_length=1)
    output: str | None = None
    doc: str | None = None


class SpecFile(Strict):
    name: str
    input: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)] = Field(description="Input shape C, H, W")
    metadata: Metadata = Field(default_factory=Metadata)
    include: list[str] = Field(default_factory=list)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    stochastic_depth: StochasticDepthSchedule | None = None
    nodes: list[dict[str, Any]] = Field(min_length=1)
    outputs: list[str] | None = None  # default: the last node
    # Outputs used only in training (GoogLeNet's auxiliary classifiers): reported separately.
    train_outputs: list[str] = Field(default_factory=list)


class BlockLibrary(Strict):
    """An included file: blocks only (and optionally further includes)."""

    include: list[str] = Field(default_factory=list)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
