"""Training memory under a named, real convention: PyTorch eager autograd, `model.train()`, float32,
every parameter trainable. Pure functions from a checked graph to immutable figures.

What is counted is what PyTorch holds at the end of the forward pass:

- **saved activations**: the tensors autograd saves for backward (each op states them, `train_saves`),
  counted once per *storage*. A tensor and its views share one storage, an op run in place writes into
  its input's storage, and two ops saving the same tensor (a ReLU's result and the next conv's input)
  save it once. The network input x is a storage like any other and is included (the first conv saves
  it). Parameters and buffers that ops save cost nothing extra.
- a node records nothing when autograd does not track it: no parameters and no input that requires grad
  (x does not), e.g. a pooling layer applied to x.
- **attribution**: a storage is charged to the first node, in execution order, that saves it, so the
  per-layer `saved_bytes` sum to the unique total.
- parameters, their gradients (one per parameter), optimizer state (SGD: none; momentum: one buffer per
  parameter; Adam: exp_avg and exp_avg_sq, plus a float32 `step` scalar per parameter tensor) and buffers
  (BN running mean and variance, and PyTorch's int64 num_batches_tracked per BN layer).

Every saved storage either scales with the batch or does not (BN's per-channel statistics), so every
figure is exactly affine in the batch: total(B) = per_image * B + constant.

Training-only heads (GoogLeNet's auxiliary classifiers) run at training time and are included; stochastic
depth branches are counted as kept (the worst case). Not modelled: the peak during backward (gradients of
activations come and go as backward walks the graph), allocator rounding and caching, workspaces of
convolution algorithms, and CUDA (cuDNN batch norm saves an extra tensor, dropout a bool mask there).
"""

from __future__ import annotations

from dataclasses import dataclass

from archspec.graph import INPUT, Graph, numel
from archspec.ops import Shape

FLOAT32 = 4  # the convention is float32: activations, parameters, gradients and optimizer state
OPTIMIZERS = ("sgd", "momentum", "adam")
# Optimizer state per parameter, in copies of the parameter (torch.optim.SGD without/with momentum, Adam).
STATE_COPIES = {"sgd": 0, "momentum": 1, "adam": 2}
ADAM_STEP_BYTES = 4  # Adam's `step`: one float32 scalar tensor per parameter tensor


@dataclass(frozen=True)
class Affine:
    """per_image * batch + constant, in bytes."""

    per_image: int = 0
    constant: int = 0

    def at(self, batch: int) -> int:
        return self.per_image * batch + self.constant

    def __add__(self, other: Affine) -> Affine:
        return Affine(self.per_image + other.per_image, self.constant + other.constant)


@dataclass(frozen=True)
class SavedStorage:
    """One storage that backward keeps alive: who allocated it, its size, and who saves it."""

    key: str  # the node whose output it is (INPUT for x), or "<node>:<what>" for a tensor only backward holds
    size: Affine
    savers: tuple[str, ...]  # nodes saving it, in execution order; the first is charged


@dataclass(frozen=True)
class TrainingMemory:
    batch: int
    optimizer: str
    saved_by_layer: tuple[tuple[str, Affine], ...]  # every node, execution order
    storages: tuple[SavedStorage, ...]
    saved_activations: Affine  # unique storages; x included
    input_bytes: int  # the network input x at this batch (part of saved_activations: the first conv saves it)
    param_bytes: int
    grad_bytes: int
    optimizer_state_bytes: int
    buffer_bytes: int
    torchinfo_bytes: int  # torchinfo's "Estimated Total Size" convention at this batch, for comparison

    @property
    def saved_activation_bytes(self) -> int:
        return self.saved_activations.at(self.batch)

    def total(self) -> Affine:
        fixed = self.param_bytes + self.grad_bytes + self.optimizer_state_bytes + self.buffer_bytes
        return self.saved_activations + Affine(0, fixed)

    @property
    def total_bytes(self) -> int:
        return self.total().at(self.batch)

    def layer_saved_bytes(self) -> dict[str, int]:
        return {name: size.at(self.batch) for name, size in self.saved_by_layer}

    def largest_batch(self, budget_bytes: int) -> int:
        """The largest batch whose total fits in budget_bytes (0 if not even one image fits)."""
        total = self.total()
        if total.per_image == 0:
            raise ValueError("nothing scales with the batch")
        return max(0, (budget_bytes - total.constant) // total.per_image)


def training_memory(graph: Graph, shapes: dict[str, Shape], batch: int = 1, optimizer: str = "sgd") -> TrainingMemory:
    """Training memory at the end of a training-mode forward pass (see the module doc for the convention)."""
    if optimizer not in STATE_COPIES:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    storage_of = {INPUT: INPUT}  # tensor -> key of the storage behind it
    size = {INPUT: Affine(numel(shapes[INPUT]) * FLOAT32)}
    savers: dict[str, list[str]] = {}
    requires_grad = {INPUT: False}  # x does not; every tensor computed from a parameter does
    params = param_tensors = buffers = torchinfo_outputs = 0
    for name in graph.order:
        op = graph.op(name)
        in_shapes = [shapes[i] for i in op.inputs]
        out = shapes[name]
        rule = op.train_saves(in_shapes, out)
        if rule.output_aliases_input:
            storage_of[name] = storage_of[op.inputs[0]]
        else:
            storage_of[name] = name
            size[name] = Affine(numel(out) * FLOAT32)
        tensors = op.param_shapes(in_shapes)
        requires_grad[name] = bool(tensors) or any(requires_grad[i] for i in op.inputs)
        for number, saved in enumerate(rule.saved):
            if not requires_grad[name]:
                break  # autograd records no node, so nothing is saved
            if saved.only_if_grad_of is not None and not requires_grad[op.inputs[saved.only_if_grad_of]]:
                continue
            if saved.source == "input":
                key = storage_of[op.inputs[saved.index]]
            elif saved.source == "output":
                key = storage_of[name]
            else:
                key = f"{name}:{number}:{saved.what}"
                nbytes = saved.elements * (saved.itemsize or FLOAT32)
                size[key] = Affine(nbytes) if saved.per_image else Affine(0, nbytes)
            if name not in savers.setdefault(key, []):
                savers[key].append(name)
        layer_params = sum(numel(s) for s in tensors.values())
        params += layer_params
        param_tensors += len(tensors)
        buffers += sum(numel(s) for s in op.buffer_shapes(in_shapes).values()) * FLOAT32 + rule.extra_buffer_bytes
        if layer_params and name in graph.inference_nodes:
            torchinfo_outputs += numel(out)

    charged = {name: Affine() for name in graph.order}
    storages = []
    for key, who in savers.items():
        charged[who[0]] += size[key]
        storages.append(SavedStorage(key, size[key], tuple(who)))
    saved = sum((s.size for s in storages), Affine())
    param_bytes = params * FLOAT32
    state = STATE_COPIES[optimizer] * param_bytes + (ADAM_STEP_BYTES * param_tensors if optimizer == "adam" else 0)
    input_bytes = numel(shapes[INPUT]) * FLOAT32 * batch
    return TrainingMemory(
        batch=batch,
        optimizer=optimizer,
        saved_by_layer=tuple(charged.items()),
        storages=tuple(storages),
        saved_activations=saved,
        input_bytes=input_bytes,
        param_bytes=param_bytes,
        grad_bytes=param_bytes,
        optimizer_state_bytes=state,
        buffer_bytes=buffers,
        # torchinfo: input + 2 x the outputs of leaf modules with parameters ("forward/backward pass
        # size") + parameter bytes (torchinfo/model_statistics.py)
        torchinfo_bytes=input_bytes + 2 * torchinfo_outputs * FLOAT32 * batch + param_bytes,
    )
