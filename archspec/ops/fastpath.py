"""The inference fast path (Model.forward) as a flag kernels can read.

Measurement (`reference.measure`, hence `verify`) records what each kernel reads and which products it
forms, and compares the arrays' memory with the static model; the fast path only needs the output. So
inside `fast()` a kernel may compute the same output another way: a convolution as one product per tap
over padded rows (products measurement would count differently), a depthwise result left channels-last
(a layout the memory model does not describe). Outside it, every kernel does exactly what is measured.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_fast: contextvars.ContextVar[bool] = contextvars.ContextVar("archspec_fast_path", default=False)


def fast_path() -> bool:
    """True inside `fast()` (in this thread or task), False otherwise."""
    return _fast.get()


@contextmanager
def fast() -> Iterator[None]:
    token = _fast.set(True)
    try:
        yield
    finally:
        _fast.reset(token)
