"""Renderers: what owns resources and their pixels, behind one interface (`base`).

`twod` is the 2D renderer (host pixel buffers, copies in C) and, without its pixel
store, the `null` mode's; virglrenderer and the cross-domain context come as further
modules beside it.
"""

from .base import Capset, CommandError, Dmabuf, Renderer, ScanoutSource
from .twod import NullRenderer, Renderer2D

__all__ = [
    "Capset",
    "CommandError",
    "Dmabuf",
    "Renderer",
    "NullRenderer",
    "Renderer2D",
    "ScanoutSource",
]
