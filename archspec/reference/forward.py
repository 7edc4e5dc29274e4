"""The NumPy reference forward pass: runs each op's kernel on real arrays and measures what it did.

Nothing here calls a static rule to obtain a figure: shapes come from the arrays, params from the
tensors the kernels read, MACs from the operands of the matrix products they executed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from archspec.errors import ResourceError, WeightsError
from archspec.graph import INPUT, Graph, last_readers
from archspec.ops import MatMul, Weights
from archspec.ops.base import tensor_key
from archspec.ops.fastpath import fast

DTYPE = np.float32
ITEM_BYTES = np.dtype(DTYPE).itemsize  # every array of the forward pass is float32


@dataclass(frozen=True)
class Measured:
    """What the forward pass observed for one node (per image where it matters)."""

    shape: tuple[int, ...]  # without the batch axis
    params: int
    buffers: int
    macs: int
    activations: int


def split_key(key: str, nodes: Collection[str]) -> tuple[str, str]:
    """(node, tensor) of a state_dict key: the inverse of `tensor_key` (a key that is a node's name
    is that node's own tensor "")."""
    if key in nodes:
        return key, ""
    node, _, tensor = key.rpartition(".")
    return node, tensor


def group_weights(
    weights: dict[str, np.ndarray], graph: Graph, owners: dict[str, tuple[str, str]] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Flat state_dict -> {node: {tensor: array}}. `owners`, when given, remembers each key's (node, tensor)
    from one call to the next (`InferencePlan.owners`)."""
    nodes = graph.nodes
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, array in weights.items():
        owner = None if owners is None else owners.get(key)
        if owner is None:
            owner = split_key(key, nodes)
            if owners is not None:
                owners[key] = owner
        node, tensor = owner
        grouped.setdefault(node, {})[tensor] = array
    return grouped


def expected_tensors(graph: Graph, shapes: dict[str, tuple]) -> dict[str, tuple[str, str, tuple]]:
    """Every tensor the graph needs: key -> (node, tensor, shape), params then buffers per node."""
    expected: dict[str, tuple[str, str, tuple]] = {}
    for name in graph.order:
        op = graph.op(name)
        in_shapes = [shapes[i] for i in op.inputs]
        for tensor, shape in {**op.param_shapes(in_shapes), **op.buffer_shapes(in_shapes)}.items():
            key = tensor_key(name, tensor)
            if key in expected:  # node 'a' with tensor 'b' and a node named 'a.b' with its own tensor
                raise WeightsError(f"error: two tensors of the spec have the same key '{key}'; rename a node")
            expected[key] = (name, tensor, tuple(shape))
    return expected


def init_weights(graph: Graph, shapes: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights in PyTorch's layouts, each op drawing its own (`OpBase.init_tensor`)."""
    rng = np.random.default_rng(seed)
    return {
        key: graph.op(name).init_tensor(tensor, shape, rng).astype(DTYPE)
        for key, (name, tensor, shape) in expected_tensors(graph, shapes).items()
    }


def expected_shapes(graph: Graph, shapes: dict[str, tuple]) -> dict[str, tuple]:
    """Every tensor the graph needs: key -> shape."""
    return {key: shape for key, (_, _, shape) in expected_tensors(graph, shapes).items()}


def check_weights(
    graph: Graph,
    shapes: dict[str, tuple],
    weights: dict[str, np.ndarray],
    source: str,
    expected: dict[str, tuple] | None = None,
) -> None:
    """Report missing, extra and mis-shaped tensors by name (all of them, not just the first).
    `expected`: `expected_shapes(graph, shapes)`, when the caller already has it."""
    expected = expected_shapes(graph, shapes) if expected is None else expected
    problems = []
    for key in expected:
        if key not in weights:
            problems.append(f"{source}: error: missing tensor '{key}' (shape {list(expected[key])})")
        elif tuple(weights[key].shape) != expected[key]:
            problems.append(
                f"{source}: error: tensor '{key}' has shape {list(weights[key].shape)}, expected {list(expected[key])}"
            )
    for key in weights:
        if key not in expected and not key.endswith("num_batches_tracked"):
            problems.append(f"{source}: error: unexpected tensor '{key}' (no such layer/tensor in the spec)")
    if problems:
        raise WeightsError("\n".join(problems))


def available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def forward_memory_bytes(analysis) -> int:
    """What a reference forward pass needs besides its weights, from a static analysis (its batch):
    twice the peak of live activations, plus kernel temporaries (pooling windows, im2col blocks)
    bounded by ten times the largest output."""
    largest = max(layer.activations for layer in analysis.layers) * analysis.batch * ITEM_BYTES
    return 2 * analysis.totals.peak_activation_bytes + 10 * largest


def guard_memory(estimate_bytes: int, what: str) -> None:
    available = available_memory_bytes()
    if estimate_bytes > 0.8 * available:
        raise ResourceError(
            f"error: {what} needs about {estimate_bytes / 2**30:,.1f} GiB, but only "
            f"{available / 2**30:,.1f} GiB is available; use a smaller --input or --batch"
        )


class Fusion(NamedTuple):
    """The followers a producer's kernel applies to its own output (`_absorbers`), in this order: a node that
    may be a per-channel affine (a batch norm), a residual add (its other input added), an activation."""

    affine: str | None
    activation: str | None
    add: str | None = None
    residual: str | None = None  # the add's other input, computed before the producer runs

    def chain(self) -> list[str]:
        """The followers, in the order they apply."""
        return [f for f in (self.affine, self.add, self.activation) if f is not None]


@dataclass(frozen=True)
class InferencePlan:
    """What `run` works out from the graph alone for Model.forward (every node in order, nothing dropped,
    only the first output kept, fused), made once per model instead of on every call (about 1 ms of
    EfficientNet-B0's pass): each tensor's last reader, the fusion plan, and each weight key's owner."""

    output: str
    last: dict[str, str]
    absorbers: dict[str, Fusion]
    owners: dict[str, tuple[str, str]]  # filled by the calls (the keys are the caller's)


def inference_plan(graph: Graph) -> InferencePlan:
    output = graph.outputs[0]
    order = list(graph.order)
    absorbers = _absorbers(graph, order, lambda n: n == output, ())
    return InferencePlan(output, last_readers(graph, order), absorbers, {})


def run(
    graph: Graph,
    x: np.ndarray,
    weights: dict[str, np.ndarray],
    *,
    nodes: list[str] | None = None,
    keep: Callable[[str], bool] | None = None,
    on_output: Callable[[str, np.ndarray, Weights, MatMul], None] | None = None,
    on_live: Callable[[str, int], None] | None = None,
    dropped: Mapping[str, tuple[int, ...]] | None = None,
    fuse: bool = False,
    plan: InferencePlan | None = None,
    derived: dict[str, dict] | None = None,
) -> dict[str, np.ndarray]:
    """Run `nodes` (default: all, in order) on input x (N, C, H, W).

    Tensors are freed after their last reader unless `keep(name)`; `on_output` sees every node's
    output with the Weights/MatMul objects its kernel used (for measurement); `on_live` gets the
    bytes of all distinct buffers alive just after each node ran (views count once). A node in
    `dropped` (a stochastic-depth branch skipped at training time, mapped to its output shape) reads
    nothing and yields zeros.
    With `fuse` (the inference fast path, `Model.forward`; never for measurement), a per-channel affine
    (a batch norm) whose input is read by nothing else is applied by the kernel that produces that input
    (`absorbs_affine`), and so is an activation after it or after the producer itself (a ReLU's or a SiLU's
    `epilogue_activation`; producers with `absorbs_activation`: conv, linear, batch norm, and the add of a
    residual block); the absorbed nodes pass the
    result on. The output is the same (to float32 round-off), but the kernels'
    Weights/MatMul records are not what `measure` needs.
    `plan` (`inference_plan(graph)`, for Model.forward) stands for nodes, keep and dropped left out and
    `fuse`, worked out beforehand. `derived` (an inference session's store, `Model.session`; never for
    measurement) keeps, per node, what kernels derive from the weights alone (`Weights.derived`).
    Returns the kept tensors (by default the graph outputs).
    """
    order = graph.order if nodes is None else list(nodes)
    if plan is not None:
        if nodes is not None or keep is not None or dropped:
            raise ValueError("run: a plan stands for nodes, keep and dropped; give one or the others")
        output = plan.output
        keep, dropped, last, absorbers = (lambda n: n == output), {}, plan.last, plan.absorbers
    else:
        keep = keep or (lambda n: n in graph.outputs or n in graph.train_outputs)
        dropped = dropped or {}
        last = last_readers(graph, order, set(dropped))
        absorbers = _absorbers(graph, list(order), keep, dropped) if fuse else {}

    def store(node: str) -> dict | None:
        return None if derived is None else derived.setdefault(node, {})

    absorbed: dict[str, str] = {}  # follower -> the node before it in its producer's chain (which holds the result)
    grouped = group_weights(weights, graph, None if plan is None else plan.owners)
    tensors: dict[str, np.ndarray] = {INPUT: np.asarray(x, dtype=DTYPE)}
    caller_input = _root(tensors[INPUT])  # never overwritten, even through a view
    kept: dict[str, np.ndarray] = {}
    for name in order:
        op = graph.op(name)
        w, mm = Weights(grouped.get(name, {}), name, store(name)), MatMul()
        # The weights were checked against the spec before the run: a kernel's ShapeError here is a bug
        # in archspec (exit 3), not a user's weights error.
        if name in dropped:
            # The branch is skipped and yields zeros of the node's shape (not every reader broadcasts).
            out = np.zeros((len(x), *dropped[name]), dtype=DTYPE)
        elif name in absorbed:
            out = tensors[absorbed[name]]
        elif op.in_place and _may_overwrite(op.inputs, name, last, keep, tensors, kept, caller_input):
            out = op.forward_in_place(tensors[op.inputs[0]])
        elif name in absorbers:
            fusion = absorbers[name]
            affine = None
            if fusion.affine is not None:
                affine = partial(
                    graph.op(fusion.affine).channel_affine,
                    Weights(grouped.get(fusion.affine, {}), fusion.affine, store(fusion.affine)),
                )
            activation = None if fusion.activation is None else graph.op(fusion.activation).epilogue_activation
            xs = [tensors[i] for i in op.inputs]
            if fusion.add is None:
                out = op.forward_fused(xs, w, mm, affine, activation)
            else:
                out = op.forward_fused(xs, w, mm, affine, activation, residual=tensors[fusion.residual])
            if out is None:  # the follower is no per-channel affine: each runs its own kernel
                out = op.forward(xs, w, mm)
            else:
                chain = [name, *fusion.chain()]
                absorbed.update(zip(chain[1:], chain[:-1], strict=True))
        else:
            out = op.forward([tensors[i] for i in op.inputs], w, mm)
        tensors[name] = out
        if on_output is not None:
            on_output(name, out, w, mm)
        if keep(name):
            kept[name] = out
        if on_live is not None:
            on_live(name, live_bytes([*tensors.values(), *kept.values()]))
        for i in set(op.inputs):
            if last.get(i) == name:
                tensors.pop(i, None)
    return kept


_BLAS: list = []  # the threadpoolctl controller of NumPy's BLAS, made once (it scans the loaded libraries)


# Above this share of the last 10 s in which some task waited for a CPU (Linux pressure stall
# information), the machine counts as busy: see blas_threads_for_load.
BUSY_CPU_PRESSURE = 20.0


def cpu_pressure() -> float | None:
    """% of the last 10 s in which some runnable task waited for a CPU (/proc/pressure/cpu), or None."""
    try:
        with open("/proc/pressure/cpu") as pressure:
            return float(pressure.readline().split()[1].partition("=")[2])
    except (OSError, IndexError, ValueError):
        return None


@contextmanager
def blas_threads_for_load() -> Iterator[None]:
    """BLAS threads for the inference fast path: as many as BLAS was given while the cores are free
    (low CPU pressure, or no pressure information), one while other processes keep them busy.

    OpenBLAS's threads wait for each other at every product, and one that has lost its core stalls
    them all: on this project's shared 2-core machine under load a 32 x 1152 x 784 product took 0.5 ms
    on one thread and 30-45 ms on two, and whole forward passes were 3-5x slower than on one thread,
    while with free cores two threads were about 1.5x faster (ResNet-50: 72-80 ms against 112-117).
    Needs threadpoolctl to read and limit BLAS's threads; without it BLAS is left as it is."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    if not _BLAS:
        _BLAS.append(ThreadpoolController().select(user_api="blas"))
    blas = _BLAS[0]
    threads = max((lib.num_threads for lib in blas.lib_controllers), default=1)
    pressure = cpu_pressure()
    if threads <= 1 or pressure is None or pressure <= BUSY_CPU_PRESSURE:
        yield
        return
    with blas.limit(limits=1):
        yield


@contextmanager
def inference() -> Iterator[None]:
    """The fast path of Model.forward: BLAS threads as `blas_threads_for_load` says, and kernels free to
    compute the same output in ways measurement would record differently (`archspec.ops.fastpath`)."""
    with blas_threads_for_load(), fast():
        yield


def _absorbers(
    graph: Graph, order: list[str], keep: Callable[[str], bool], dropped: Collection[str]
) -> dict[str, Fusion]:
    """{producer: Fusion}: the followers the producer's kernel may apply (`absorbs_affine`,
    `absorbs_residual`, `absorbs_activation`): a node that may be a per-channel affine (whether it is, its
    `channel_affine` says at run time), then a residual add (`sums_inputs`: two inputs, the other one
    computed before the producer runs), then an activation (`epilogue_activation`: a ReLU, a SiLU); any of
    them may be missing, not all. Each link must be the only reader of the one before and not be dropped;
    all but the add have that one input; only the last link may be kept (the others' outputs never exist
    on their own)."""
    readers = graph.readers
    running = set(order)
    position = {node: index for index, node in enumerate(order)}

    def sole_follower(source: str) -> str | None:
        if keep(source) or len(readers[source]) != 1:
            return None
        follower = readers[source][0]
        if follower not in running or follower in dropped or len(graph.op(follower).inputs) != 1:
            return None
        return follower

    def activation_after(source: str) -> str | None:
        follower = sole_follower(source)
        return follower if follower is not None and graph.op(follower).epilogue_activation is not None else None

    def residual_add(source: str, producer: str) -> tuple[str, str] | None:
        """(add, its other input) when source's only reader is a sum of two inputs whose other input exists
        before the producer runs (a residual block's identity branch), else None."""
        if keep(source) or len(readers[source]) != 1:
            return None
        add = readers[source][0]
        inputs = graph.op(add).inputs
        if add not in running or add in dropped or not graph.op(add).sums_inputs or len(inputs) != 2:
            return None
        if inputs[0] == inputs[1]:
            return None
        other = inputs[1] if inputs[0] == source else inputs[0]
        if other != INPUT and (other not in position or position[other] > position[producer]):
            return None
        return add, other

    pairs: dict[str, Fusion] = {}
    claimed: set[str] = set()  # followers of an earlier producer (a batch norm or an add its conv applies)
    for name in order:
        op = graph.op(name)
        if name in dropped or name in claimed or not (op.absorbs_affine or op.absorbs_activation):
            continue
        first = sole_follower(name)
        if first is None:  # a conv straight into a residual add?
            if op.absorbs_residual and (found := residual_add(name, name)) is not None:
                add, other = found
                pairs[name] = Fusion(None, activation_after(add), add, other)
                claimed.add(add)
            continue
        if graph.op(first).epilogue_activation is not None:
            if op.absorbs_activation:
                pairs[name] = Fusion(None, first)
            continue
        if not op.absorbs_affine:
            continue
        if op.absorbs_residual and (found := residual_add(first, name)) is not None:
            add, other = found
            pairs[name] = Fusion(first, activation_after(add) if op.absorbs_activation else None, add, other)
            claimed.update((first, add))
            continue
        pairs[name] = Fusion(first, activation_after(first) if op.absorbs_activation else None)
        claimed.add(first)
    return pairs


def _may_overwrite(inputs, name, last, keep, tensors, kept, caller_input) -> bool:
    """An in-place op may reuse its input's buffer when that input is read for the last time here,
    is neither (a view of) the caller's input nor a kept output, and no other live tensor views the buffer
    (the same rule as the static memory model)."""
    if len(inputs) != 1 or inputs[0] == INPUT or last.get(inputs[0]) != name or keep(inputs[0]):
        return False
    root = _root(tensors[inputs[0]])
    others = [t for n, t in tensors.items() if n != inputs[0]] + list(kept.values())
    return root is not caller_input and all(_root(t) is not root for t in others)


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def live_bytes(arrays: list[np.ndarray]) -> int:
    """Bytes of the distinct memory buffers behind `arrays` (a view and its base count once)."""
    roots = {}
    for array in arrays:
        root = _root(array)
        roots[id(root)] = root.nbytes
    return sum(roots.values())


def measure(
    graph: Graph, x: np.ndarray, weights: dict[str, np.ndarray], live: dict[str, int] | None = None
) -> dict[str, Measured]:
    """Run the whole graph once and record what each kernel actually did (and, into `live`, the
    bytes of live buffers after each node)."""
    batch = x.shape[0]
    measured: dict[str, Measured] = {}

    def record(name, out, w: Weights, mm: MatMul):
        measured[name] = Measured(
            shape=tuple(out.shape[1:]),
            params=sum(w.trainable_read.values()),
            buffers=sum(w.buffers_read.values()),
            macs=mm.macs // batch,
            activations=int(out.size) // batch,
        )

    run(graph, x, weights, on_output=record, on_live=None if live is None else live.__setitem__)
    return measured
