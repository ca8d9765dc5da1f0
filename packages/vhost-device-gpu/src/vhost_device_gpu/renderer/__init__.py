"""Renderers: what owns resources and their pixels, behind one interface (`base`).

`twod` is the 2D renderer (host pixel buffers, copies in C) and, without its pixel
store, the `null` mode's; `virgl` is virglrenderer's (imported only in that mode: it
links libvirglrenderer), its contexts from a per-capset table of `Context` factories;
the cross-domain context type sits beside any renderer (`routing`), not in it.
"""

from .base import Capset, CommandError, Context, Dmabuf, Renderer, ScanoutSource
from .twod import NullRenderer, Renderer2D

__all__ = [
    "Capset",
    "CommandError",
    "Context",
    "Dmabuf",
    "Renderer",
    "NullRenderer",
    "Renderer2D",
    "ScanoutSource",
]
