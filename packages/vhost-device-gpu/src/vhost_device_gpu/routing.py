"""Which side serves a context (3D) command: the renderer (its own contexts and
resources) or the cross-domain context type (capset 5) with the device's host blobs.

One daemon may have both (`-g virglrenderer --wayland-socket`). Context ids and
resource ids are one space the guest allocates for both sides, so the router refuses
an id that names something on the other side, with a status and a line that say so,
instead of letting the two disagree about what it is.
"""

from __future__ import annotations

import enum

from .blob import Blobs
from .crossdomain import CAPSET_CROSS_DOMAIN, CrossDomain
from .protocol import BLOB_MEM_HOST3D, Cmd, CtrlHeader, CtxCreate, ResourceId, Resp
from .renderer import CommandError, Renderer

#: The context commands (CTX_CREATE .. RESOURCE_UNMAP_BLOB).
CONTEXT_COMMANDS = range(Cmd.CTX_CREATE, Cmd.RESOURCE_UNMAP_BLOB + 1)
#: Context commands on the renderer's side whose first field is a resource id.
_NAMES_RESOURCE = (Cmd.CTX_ATTACH_RESOURCE, Cmd.CTX_DETACH_RESOURCE, Cmd.RESOURCE_CREATE_3D)


class Side(enum.Enum):
    RENDERER = "renderer"
    CROSS_DOMAIN = "cross-domain"


class Router:
    """The routing rules, in one place; `device` asks and dispatches."""

    def __init__(self, renderer: Renderer, crossdomain: CrossDomain | None, blobs: Blobs) -> None:
        self.renderer = renderer
        self.crossdomain = crossdomain
        self.blobs = blobs

    def route(self, header: CtrlHeader, data: bytes) -> Side:
        """The side of one control command: cross-domain's are a CTX_CREATE for capset
        5, every command on one of its contexts and the mapping of a host blob; the
        rest is the renderer's. Raises CommandError for an id of the other side."""
        cd = self.crossdomain
        kind = header.type
        if cd is None or kind not in CONTEXT_COMMANDS:
            return Side.RENDERER
        if kind == Cmd.CTX_CREATE:
            if CtxCreate.decode(data).capset_id == CAPSET_CROSS_DOMAIN:
                if self.renderer.has_context(header.ctx_id):
                    raise CommandError(
                        Resp.ERR_INVALID_CONTEXT_ID,
                        f"context id {header.ctx_id} is a {self.renderer.name} context",
                    )
                return Side.CROSS_DOMAIN
            if cd.owns(header.ctx_id):
                raise CommandError(
                    Resp.ERR_INVALID_CONTEXT_ID,
                    f"context id {header.ctx_id} is a cross-domain context",
                )
            return Side.RENDERER
        if kind in (Cmd.RESOURCE_MAP_BLOB, Cmd.RESOURCE_UNMAP_BLOB):
            host = ResourceId.decode(data).resource_id in self.blobs.host
            return Side.CROSS_DOMAIN if host else Side.RENDERER
        if cd.owns(header.ctx_id):
            return Side.CROSS_DOMAIN
        if kind in _NAMES_RESOURCE:
            rid = ResourceId.decode(data).resource_id
            if rid in self.blobs.host:
                raise CommandError(
                    Resp.ERR_INVALID_RESOURCE_ID,
                    f"resource {rid} is a cross-domain host blob: "
                    f"{self.renderer.name}'s contexts cannot use it",
                )
        return Side.RENDERER

    def blob_side(self, ctx_id: int, blob_mem: int) -> Side:
        """RESOURCE_CREATE_BLOB: a host3d blob of a cross-domain context is its own (a
        memfd the device keeps); every other blob is the renderer's."""
        cd = self.crossdomain
        if blob_mem == BLOB_MEM_HOST3D and cd is not None and cd.owns(ctx_id):
            return Side.CROSS_DOMAIN
        return Side.RENDERER

    def new_resource(self, resource_id: int, side: Side) -> None:
        """A resource id about to be created on `side` must be free on both."""
        taken = resource_id in self.blobs.host or (
            side is Side.CROSS_DOMAIN and self.renderer.has_resource(resource_id)
        )
        if resource_id == 0 or taken:
            what = "reserved" if resource_id == 0 else "taken"
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"resource id {resource_id} is {what}")
