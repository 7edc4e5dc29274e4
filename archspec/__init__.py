"""archspec: exact, static analysis of CNN architectures declared as YAML graphs."""

from archspec.errors import ArchspecError, SpecError
from archspec.model import Model, load

__all__ = ["ArchspecError", "Model", "SpecError", "load"]
__version__ = "0.1.0"
