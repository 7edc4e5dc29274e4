"""archspec: exact, static analysis of CNN architectures declared as YAML graphs."""

from archspec.errors import ArchspecError, SpecError
from archspec.model import Model, Session, load, loads

__all__ = ["ArchspecError", "Model", "Session", "SpecError", "load", "loads"]
__version__ = "0.1.0"
