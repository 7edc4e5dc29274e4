"""Work sharing for the inference fast path: element-wise kernels, depthwise convolutions, im2col
copies and pooling cut into bands run on the caller's thread and a few helper threads (NumPy releases
the GIL inside its loops). BLAS threads its own products; this covers the work BLAS never sees.

The caller never waits for a band nobody has started: after its own band it takes any band still
unclaimed, so a helper that has no core costs at most the hand-off.

`sharing(threads)` turns this on for the current thread (Model.forward, when the machine's cores are
free: see `reference.forward.shared_blas`); outside it nothing is split, so measurement and every other
caller run exactly as before.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_threads: contextvars.ContextVar[int] = contextvars.ContextVar("archspec_shared_threads", default=1)


_fast: contextvars.ContextVar[bool] = contextvars.ContextVar("archspec_fast_path", default=False)


def fast_path() -> bool:
    """True inside `fast()`: the inference path (Model.forward), where nothing reads the kernels'
    Weights/MatMul records, so a kernel may take a method whose products differ from the ones
    measurement counts (a convolution over padded rows, for instance). False for measurement."""
    return _fast.get()


@contextmanager
def fast() -> Iterator[None]:
    token = _fast.set(True)
    try:
        yield
    finally:
        _fast.reset(token)


def shared_threads() -> int:
    """How many threads (the caller's included) may share one kernel's work now; 1 outside `sharing`."""
    return _threads.get()


class _Part:
    __slots__ = ("claimed", "done", "error", "run")

    def __init__(self, run: Callable[[], object]):
        self.run = run
        self.claimed = False
        self.done = threading.Event()
        self.error: BaseException | None = None


class _Pool:
    """Daemon helper threads taking parts from one queue (started on first use, never more than asked)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Part] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._helpers = 0

    def ensure(self, helpers: int) -> None:
        with self._lock:
            while self._helpers < helpers:
                threading.Thread(target=self._serve, name="archspec-share", daemon=True).start()
                self._helpers += 1

    def _claim(self, part: _Part) -> bool:
        with self._lock:
            if part.claimed:
                return False
            part.claimed = True
            return True

    def _execute(self, part: _Part) -> None:
        try:
            part.run()
        except BaseException as error:  # re-raised on the caller's thread
            part.error = error
        finally:
            part.done.set()

    def _serve(self) -> None:
        while True:
            part = self._queue.get()
            if self._claim(part):
                self._execute(part)

    def run_all(self, runs: list[Callable[[], object]]) -> None:
        """Run every callable; the first on this thread, the others offered to the helpers and taken back
        by this thread when no helper has started them by the time it is free."""
        parts = [_Part(run) for run in runs[1:]]
        self.ensure(len(parts))
        for part in parts:
            self._queue.put(part)
        runs[0]()
        for part in parts:
            if self._claim(part):
                self._execute(part)
        for part in parts:
            part.done.wait()
            if part.error is not None:
                raise part.error


_POOL = _Pool()


def run_shared(runs: list[Callable[[], object]]) -> None:
    """Run independent callables (which release the GIL: NumPy loops) on up to `shared_threads()`."""
    if len(runs) == 1:
        runs[0]()
    else:
        _POOL.run_all(runs)


# An element-wise kernel's output of at least this many elements (2 MiB of float32, about 0.3 ms of
# memory traffic per pass) is cut into bands (see `bands`); smaller ones are not worth a hand-off.
SHARED_ELEMENTS = 1 << 19


def bands(shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Index tuples cutting an (N, C, H, W) array into one band of rows (axis 2) per sharing thread,
    whatever its memory layout; a single band covering everything outside `sharing`, for small or flat
    arrays. Element-wise kernels run one band per thread: `run_shared([... for band in bands(shape)])`."""
    threads = shared_threads()
    if threads == 1 or len(shape) != 4 or shape[2] < threads or math.prod(shape) < SHARED_ELEMENTS:
        return [(...,)]
    cut = [shape[2] * i // threads for i in range(threads + 1)]
    return [(slice(None), slice(None), slice(lo, hi)) for lo, hi in itertools.pairwise(cut)]


@contextmanager
def sharing(threads: int) -> Iterator[None]:
    """Share large kernels' work over `threads` threads (the caller's included) inside this block."""
    token = _threads.set(max(1, threads))
    try:
        yield
    finally:
        _threads.reset(token)
