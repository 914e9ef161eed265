"""Stub of weft._weft._testing: fault injection for tests only
(crates/weft-py/src/greenlet/testing.rs)."""
from typing import Literal

from . import greenlet

__all__ = ["get_fault", "set_fault"]

def set_fault(g: greenlet, kind: Literal["switch", "fatal"] | None) -> None: ...
def get_fault(g: greenlet) -> Literal["switch", "fatal"] | None: ...
