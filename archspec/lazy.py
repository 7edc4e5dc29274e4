"""NumPy, imported on first use.

Static analysis is pure integer arithmetic; only the forward pass, verification and weight files need
NumPy. Importing it costs about 70 ms (and starts BLAS threads), a quarter of `archspec analyze`'s
start-up budget, so the modules that analysis imports take NumPy from here:

    from archspec.lazy import numpy as np

The object is the real `numpy` module: the standard library's LazyLoader runs NumPy's `__init__` on
the first attribute access and then turns the object into an ordinary module, so later accesses cost
nothing extra. It is registered in `sys.modules`, so anyone who imports NumPy gets the same module.
Note that an `import numpy` statement touches the module and so loads it: modules on the analysis path
must use this import instead (tests/test_startup.py checks that `analyze` never loads NumPy).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name` as a module that is executed on first attribute access (or the module, if already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


numpy = lazy_module("numpy")
