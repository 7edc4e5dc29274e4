"""The public Python API: `archspec.load(path) -> Model`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from archspec.analysis.analyze import Analysis, analyze
from archspec.errors import UsageError
from archspec.graph import Graph, build_graph
from archspec.reference import forward as reference
from archspec.spec.load import load_spec


@dataclass(frozen=True)
class Model:
    graph: Graph

    @property
    def name(self) -> str:
        return self.graph.spec.spec.name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.graph.spec.spec.input)

    @cached_property
    def shapes(self) -> dict[str, tuple]:
        return self.graph.infer_shapes(self.input_shape)

    def analyze(self, input_shape=None, batch: int = 1, dtype: str = "float32") -> Analysis:
        """Static per-layer and total figures (no weights, no arrays)."""
        return analyze(self.graph, input_shape, batch, dtype)

    def init_weights(self, seed: int = 0, input_shape=None) -> dict[str, np.ndarray]:
        """Random weights keyed '<layer>.<tensor>' in PyTorch's layouts."""
        shapes = self.graph.infer_shapes(tuple(input_shape or self.input_shape))
        return reference.init_weights(self.graph, shapes, seed)

    def forward(self, x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
        """Inference-mode forward pass of the first output for x of shape (N, C, H, W)."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise UsageError(f"error: input must be N x C x H x W, got shape {list(x.shape)}")
        shapes = self.graph.infer_shapes(tuple(int(d) for d in x.shape[1:]))
        reference.check_weights(self.graph, shapes, weights, "weights")
        analysis = self.analyze(tuple(x.shape[1:]), batch=x.shape[0])
        reference.guard_memory(reference.forward_memory_bytes(analysis), "this forward pass")
        outputs = reference.run(self.graph, x, weights, keep=lambda n: n == self.graph.outputs[0])
        return outputs[self.graph.outputs[0]]


def load(path: str) -> Model:
    """Load, validate and check a spec; raises archspec.errors.ArchspecError with locations."""
    if str(path).lower().endswith(".onnx"):  # an ONNX model, imported on the fly (archspec/onnx/)
        from archspec.onnx.importer import load_onnx

        return load_onnx(path)
    return Model(build_graph(load_spec(path)))
