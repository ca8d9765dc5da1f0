"""The virgl side of the guest for the frontend tests: the context commands and a
minimal virgl command stream (a surface cleared to a colour), encoded here with struct
from the specs (virtio 1.2 §5.7.6.7, virglrenderer's virgl_protocol.h)."""

from __future__ import annotations

import struct

from gpu_rig import hdr

OK_CAPSET_INFO = 0x1102
CTX_CREATE, CTX_DESTROY, CTX_ATTACH, CTX_DETACH = 0x200, 0x201, 0x202, 0x203
CREATE_3D, TO_HOST_3D, FROM_HOST_3D, SUBMIT_3D, MAP_BLOB = 0x204, 0x205, 0x206, 0x207, 0x208
FLAG_FENCE, FLAG_RING = 1, 2
FEATURE_VIRGL, FEATURE_BLOB, FEATURE_CONTEXT_INIT = 1 << 0, 1 << 3, 1 << 4
BGRX = 2
PIPE_TEXTURE_2D, BIND_RENDER_TARGET, BIND_SCANOUT = 2, 1 << 1, 1 << 18
W, H = 64, 64


def ctx_create(ctx: int, context_init: int = 0, name: bytes = b"test") -> bytes:
    return hdr(CTX_CREATE, ctx=ctx) + struct.pack("<II64s", len(name), context_init, name)


def ctx_res(kind: int, ctx: int, rid: int) -> bytes:
    return hdr(kind, ctx=ctx) + struct.pack("<I4x", rid)


def create_3d(rid: int, w: int = W, h: int = H, fmt: int = BGRX, target: int = PIPE_TEXTURE_2D,
              bind: int = BIND_RENDER_TARGET | BIND_SCANOUT, flags: int = 0) -> bytes:  # fmt: skip
    return hdr(CREATE_3D) + struct.pack("<11I4x", rid, target, fmt, bind, w, h, 1, 1, 0, 0, flags)


def transfer_3d(
    kind: int, rid: int, ctx: int = 0, box: tuple[int, ...] = (0, 0, 0, W, H, 1),
    stride: int = W * 4, offset: int = 0,
) -> bytes:  # fmt: skip
    flags = fence = 0
    return hdr(kind, flags, fence, ctx) + struct.pack("<6IQIIII", *box, offset, rid, 0, stride, 0)


def vcmd(op: int, obj: int, payload: bytes) -> bytes:
    """One virgl protocol command: op | object type << 8 | length in dwords << 16."""
    return struct.pack("<I", op | obj << 8 | (len(payload) // 4) << 16) + payload


def clear_stream(rid: int, rgba: tuple[float, float, float, float]) -> bytes:
    """A surface on the resource, bound as the colour buffer, cleared to `rgba`."""
    return (
        vcmd(1, 8, struct.pack("<IIIII", 1, rid, BGRX, 0, 0))  # CREATE_OBJECT(SURFACE)
        + vcmd(5, 0, struct.pack("<III", 1, 0, 1))  # SET_FRAMEBUFFER_STATE
        + vcmd(7, 0, struct.pack("<I4fdI", 4, *rgba, 0.0, 0))  # CLEAR(colour)
    )


def submit(ctx: int, stream: bytes, *, flags: int = 0, fence: int = 0, ring: int = 0,
           size: int | None = None) -> bytes:  # fmt: skip
    n = len(stream) if size is None else size
    return hdr(SUBMIT_3D, flags, fence, ctx, ring) + struct.pack("<I4x", n) + stream
