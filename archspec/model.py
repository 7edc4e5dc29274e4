"""The public Python API: `archspec.load(path) -> Model`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from archspec.analysis.analyze import Analysis, analyze
from archspec.errors import SpecError, UsageError, WeightsError
from archspec.graph import Graph, build_graph, paused_gc
from archspec.lazy import numpy as np
from archspec.spec.load import load_mapping, load_spec, load_text


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

    def analyze(self, input_shape=None, batch: int = 1, dtype: str = "float32", optimizer=None) -> Analysis:
        """Static per-layer and total figures (no weights, no arrays)."""
        with paused_gc():
            return analyze(self.graph, input_shape, batch, dtype, optimizer)

    def init_weights(self, seed: int = 0, input_shape=None) -> dict[str, np.ndarray]:
        """Random weights keyed '<layer>.<tensor>' in PyTorch's layouts."""
        from archspec.reference import forward as reference  # imported here: analysis alone needs no NumPy

        shapes = self.graph.infer_shapes(tuple(input_shape or self.input_shape))
        return reference.init_weights(self.graph, shapes, seed)

    def forward(
        self, x: np.ndarray, weights: dict[str, np.ndarray], *, weights_source: str = "weights", input_source="input"
    ) -> np.ndarray:
        """Inference-mode forward pass of the first output for x of shape (N, C, H, W).

        x may have another H x W than the spec's input if the weights still fit (a fully convolutional
        net); a mismatch is reported against the input, not the weights. The *_source names are what
        error messages call the two arrays (their file names, for `archspec run`). For many calls with
        the same weights, `session(weights)` is faster."""
        return self._infer(x, weights, weights_source, input_source)

    def session(self, weights: dict[str, np.ndarray], *, weights_source: str = "weights") -> Session:
        """An inference session: `session(x)` gives what `forward(x, weights)` gives (to float32
        round-off), faster from its second call on. See `Session`."""
        return Session(self, weights, weights_source)

    def _infer(
        self,
        x: np.ndarray,
        weights: dict[str, np.ndarray],
        weights_source: str,
        input_source: str,
        derived: dict[str, dict] | None = None,
        checked: tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """forward's work; `derived`: a session's store (`reference.run`), `checked`: the image shape (C, H, W)
        the weights are already known to fit."""
        from archspec.reference import forward as reference

        x = np.asarray(x)
        if x.ndim != 4:
            raise UsageError(f"{input_source}: error: input must be N x C x H x W, got shape {list(x.shape)}")
        if x.shape[0] == 0:
            raise UsageError(f"{input_source}: error: input has batch size 0; give at least one image")
        if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise UsageError(f"{input_source}: error: input must be real numbers, got dtype {x.dtype}")
        image = tuple(int(d) for d in x.shape[1:])
        if image != checked:
            self._check_weights(image, weights, weights_source, input_source)
        reference.guard_memory(self._forward_bytes(image, x.shape[0]), "this forward pass")
        if "inference" not in self._plans:
            self._plans["inference"] = reference.inference_plan(self.graph)
        with reference.inference():
            outputs = reference.run(self.graph, x, weights, plan=self._plans["inference"], derived=derived)
        return outputs[self.graph.outputs[0]]

    def _check_weights(
        self, image: tuple[int, ...], weights: dict[str, np.ndarray], weights_source: str, input_source: str
    ) -> None:
        """Raise WeightsError unless the weights fit the spec at this input size (C, H, W); UsageError when
        they fit the spec's own input but not this one."""
        from archspec.reference import forward as reference

        try:
            shapes, expected = self._tensor_shapes(image)
            reference.check_weights(self.graph, shapes, weights, weights_source, expected)
        except (SpecError, WeightsError):
            if image == tuple(self.input_shape):
                raise
            raise UsageError(
                f"{input_source}: error: the input's images are {' x '.join(map(str, image))} (C x H x W), but "
                f"{self.name} takes {' x '.join(map(str, self.input_shape))}\n"
                + (
                    f"  hint: give {self.input_shape[0]}-channel images"
                    if image[0] != self.input_shape[0]
                    else "  hint: resize the input to the spec's input size (the weights were made for it)"
                )
            ) from None

    # What a forward pass at one input size needs to know before it runs, worked out once per size: the
    # graph never changes, and analysing it again cost 3-9 ms per call (a third of MobileNetV2's pass).
    @cached_property
    def _plans(self) -> dict:
        return {}

    def _tensor_shapes(self, image: tuple[int, ...]) -> tuple[dict[str, tuple], dict[str, tuple]]:
        """(shapes, expected tensor shapes) at this input size; raises SpecError when it does not fit."""
        from archspec.reference import forward as reference

        key = ("tensors", image)
        if key not in self._plans:
            shapes = self.graph.infer_shapes(image)
            self._plans[key] = (shapes, reference.expected_shapes(self.graph, shapes))
        return self._plans[key]

    def _forward_bytes(self, image: tuple[int, ...], batch: int) -> int:
        from archspec.reference import forward as reference

        key = ("bytes", image, batch)
        if key not in self._plans:
            self._plans[key] = reference.forward_memory_bytes(self.analyze(image, batch=batch))
        return self._plans[key]


class Session:
    """Inference with one set of weights, many times: `session = model.session(weights)`, then
    `session(x)` (or `session.forward(x)`) for each batch, like an ONNX Runtime InferenceSession or a
    PyTorch module in eval mode.

    - It checks the weights against the spec once, and keeps its own copy of them: later changes to the
      caller's arrays do not reach it (the copy costs the weights' size in memory).
    - It keeps what the kernels derive from the weights alone, from its first call to the next: each 3x3
      layer's Winograd-transformed kernels (16/9 of its weights) and each batch norm's scale and shift.
      `Model.forward` makes them again on every call, as the weights could have changed.
    - With those kept, more 3x3 layers pay for Winograd (`ops.conv.WINOGRAD_KEPT_PAIRS`), so its results
      can differ from `Model.forward`'s by float32 round-off, never more.

    Measurement (`archspec verify`) never uses a session: it runs the unfused definitions."""

    def __init__(self, model: Model, weights: dict[str, np.ndarray], weights_source: str = "weights"):
        image = tuple(model.input_shape)
        model._check_weights(image, weights, weights_source, "input")
        self.model = model
        self._weights = {key: np.array(value, order="C") for key, value in weights.items()}
        self._weights_source = weights_source
        self._checked = image
        self._derived: dict[str, dict] = {}

    def forward(self, x: np.ndarray, *, input_source: str = "input") -> np.ndarray:
        """`model.forward(x, weights)` with the session's weights."""
        return self.model._infer(x, self._weights, self._weights_source, input_source, self._derived, self._checked)

    __call__ = forward


def load(
    source: str | os.PathLike | Mapping | None = None,
    *,
    text: str | None = None,
    base_dir: str | os.PathLike | None = None,
) -> Model:
    """Load, validate and check a spec; raises archspec.ArchspecError with located diagnostics.

    - `load("specs/vgg16.yaml")`: a spec file (a str or path is always a file name);
    - `load({"name": ..., "nodes": [...]})`: a spec as Python data; errors are located by key path
      (`<mapping>:nodes[2].out_channels`);
    - `load(text=yaml_text)` (or `loads(yaml_text)`): YAML text; errors as `<string>:line:col`.

    For data and text, relative includes resolve in `base_dir` (default: the current directory) and
    stay confined to it; `archspec:<name>` includes work everywhere.
    """
    if (source is None) == (text is None):
        raise UsageError("error: archspec.load takes a spec path or mapping, or text=..., exactly one of them")
    with paused_gc():  # see graph.paused_gc: keeps load time linear in the number of nodes
        if text is not None:
            return Model(build_graph(load_text(text, base_dir=base_dir)))
        if isinstance(source, Mapping):
            return Model(build_graph(load_mapping(dict(source), base_dir=base_dir)))
        if isinstance(source, (str, os.PathLike)):
            if os.fspath(source).lower().endswith(".onnx"):  # an ONNX model, imported on the fly (archspec/onnx/)
                from archspec.onnx.importer import load_onnx

                return load_onnx(os.fspath(source))
            return Model(build_graph(load_spec(os.fspath(source))))
    raise UsageError(f"error: archspec.load takes a path, a mapping or text=..., not {type(source).__name__}")


def loads(text: str, *, base_dir: str | os.PathLike | None = None) -> Model:
    """`load(text=...)`: a spec given as YAML text."""
    return load(text=text, base_dir=base_dir)
