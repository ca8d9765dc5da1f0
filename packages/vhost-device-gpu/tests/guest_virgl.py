"""Runs in the guest (on the host's root, so Debian's own Mesa): GLES through Mesa's GBM
EGL platform on /dev/dri/card0, which is Mesa's virgl driver on the virtio-gpu DRM
device. Prints the GL renderer, draws a known picture with scissored clears (exact
pixels, no rasterisation), and puts it on the CRTC with KMS; then asks the host for a
screendump over the control port and waits for its answer.

    python3 guest_virgl.py /dev/vportNpM

The picture (screen coordinates, top-left origin): red everywhere, the bottom-left
quarter green, the top-right quarter blue.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import POINTER, Structure, byref, c_char, c_char_p, c_int, c_uint16, c_uint32, c_void_p

GBM_FORMAT_XRGB8888 = 0x34325258
GBM_BO_USE_SCANOUT, GBM_BO_USE_RENDERING = 1 << 0, 1 << 2
EGL_PLATFORM_GBM_KHR = 0x31D7
EGL_NONE, EGL_SURFACE_TYPE, EGL_WINDOW_BIT = 0x3038, 0x3033, 0x0004
EGL_RED_SIZE, EGL_GREEN_SIZE, EGL_BLUE_SIZE = 0x3024, 0x3023, 0x3022
EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT, EGL_NATIVE_VISUAL_ID = 0x3040, 0x0004, 0x302E
EGL_OPENGL_ES_API, EGL_CONTEXT_CLIENT_VERSION = 0x30A0, 0x3098
GL_COLOR_BUFFER_BIT, GL_SCISSOR_TEST = 0x4000, 0x0C11
GL_VENDOR, GL_RENDERER, GL_VERSION = 0x1F00, 0x1F01, 0x1F02
DRM_MODE_CONNECTED = 1


TIMINGS = "hdisplay hsync_start hsync_end htotal hskew vdisplay vsync_start vsync_end vtotal vscan"


class ModeInfo(Structure):
    _fields_ = (
        [("clock", c_uint32)]
        + [(n, c_uint16) for n in TIMINGS.split()]
        + [("vrefresh", c_uint32), ("flags", c_uint32), ("type", c_uint32), ("name", c_char * 32)]
    )


class Resources(Structure):
    _fields_ = [
        ("count_fbs", c_int), ("fbs", POINTER(c_uint32)),
        ("count_crtcs", c_int), ("crtcs", POINTER(c_uint32)),
        ("count_connectors", c_int), ("connectors", POINTER(c_uint32)),
        ("count_encoders", c_int), ("encoders", POINTER(c_uint32)),
        ("min_width", c_uint32), ("max_width", c_uint32),
        ("min_height", c_uint32), ("max_height", c_uint32),
    ]  # fmt: skip


class Connector(Structure):
    _fields_ = [
        ("connector_id", c_uint32), ("encoder_id", c_uint32), ("connector_type", c_uint32),
        ("connector_type_id", c_uint32), ("connection", c_int), ("mmWidth", c_uint32),
        ("mmHeight", c_uint32), ("subpixel", c_int), ("count_modes", c_int),
        ("modes", POINTER(ModeInfo)),
    ]  # fmt: skip


class Encoder(Structure):
    _fields_ = [("encoder_id", c_uint32), ("encoder_type", c_uint32), ("crtc_id", c_uint32)]


def main() -> int:
    ctl_path = sys.argv[1]
    drm = ctypes.CDLL("libdrm.so.2")
    gbm = ctypes.CDLL("libgbm.so.1")
    egl = ctypes.CDLL("libEGL.so.1")
    gl = ctypes.CDLL("libGLESv2.so.2")
    drm.drmModeGetResources.restype = POINTER(Resources)
    drm.drmModeGetConnector.restype = POINTER(Connector)
    drm.drmModeGetEncoder.restype = POINTER(Encoder)
    gbm.gbm_create_device.restype = c_void_p
    gbm.gbm_surface_create.restype = c_void_p
    gbm.gbm_surface_create.argtypes = [c_void_p, c_uint32, c_uint32, c_uint32, c_uint32]
    gbm.gbm_surface_lock_front_buffer.restype = c_void_p
    gbm.gbm_surface_lock_front_buffer.argtypes = [c_void_p]
    gbm.gbm_bo_get_handle.restype = ctypes.c_uint64
    gbm.gbm_bo_get_handle.argtypes = [c_void_p]
    gbm.gbm_bo_get_stride.restype = c_uint32
    gbm.gbm_bo_get_stride.argtypes = [c_void_p]
    egl.eglGetPlatformDisplay.restype = c_void_p
    egl.eglGetPlatformDisplay.argtypes = [c_uint32, c_void_p, c_void_p]
    egl.eglCreateContext.restype = c_void_p
    egl.eglCreateContext.argtypes = [c_void_p, c_void_p, c_void_p, POINTER(c_int)]
    egl.eglCreateWindowSurface.restype = c_void_p
    egl.eglCreateWindowSurface.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p]
    egl.eglChooseConfig.argtypes = [
        c_void_p,
        POINTER(c_int),
        POINTER(c_void_p),
        c_int,
        POINTER(c_int),
    ]
    egl.eglGetConfigAttrib.argtypes = [c_void_p, c_void_p, c_int, POINTER(c_int)]
    egl.eglInitialize.argtypes = [c_void_p, c_void_p, c_void_p]
    egl.eglMakeCurrent.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p]
    egl.eglSwapBuffers.argtypes = [c_void_p, c_void_p]
    gl.glGetString.restype = c_char_p
    gl.glClearColor.argtypes = [ctypes.c_float] * 4

    fd = os.open("/dev/dri/card0", os.O_RDWR)
    res = drm.drmModeGetResources(fd).contents
    conn = None
    for i in range(res.count_connectors):
        c = drm.drmModeGetConnector(fd, res.connectors[i]).contents
        if c.connection == DRM_MODE_CONNECTED and c.count_modes:
            conn = c
            break
    assert conn is not None, "no connected connector"
    mode = conn.modes[0]
    crtc = (
        drm.drmModeGetEncoder(fd, conn.encoder_id).contents.crtc_id
        if conn.encoder_id
        else res.crtcs[0]
    )
    width, height = mode.hdisplay, mode.vdisplay
    print(f"mode: {width}x{height}", flush=True)

    device = gbm.gbm_create_device(fd)
    surface = gbm.gbm_surface_create(
        device, width, height, GBM_FORMAT_XRGB8888, GBM_BO_USE_SCANOUT | GBM_BO_USE_RENDERING
    )
    dpy = egl.eglGetPlatformDisplay(EGL_PLATFORM_GBM_KHR, device, None)
    assert egl.eglInitialize(dpy, None, None), "eglInitialize"
    egl.eglBindAPI(EGL_OPENGL_ES_API)
    attrs = (c_int * 13)(
        EGL_SURFACE_TYPE, EGL_WINDOW_BIT, EGL_RED_SIZE, 8, EGL_GREEN_SIZE, 8, EGL_BLUE_SIZE, 8,
        EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT, EGL_NONE, 0, 0,
    )  # fmt: skip
    configs, count = (c_void_p * 64)(), c_int()
    egl.eglChooseConfig(dpy, attrs, configs, 64, byref(count))
    config = None
    for i in range(count.value):
        visual = c_int()
        egl.eglGetConfigAttrib(dpy, configs[i], EGL_NATIVE_VISUAL_ID, byref(visual))
        if visual.value == GBM_FORMAT_XRGB8888:
            config = configs[i]
            break
    assert config is not None, "no XRGB8888 EGL config"
    ctx_attrs = (c_int * 3)(EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE)
    ctx = egl.eglCreateContext(dpy, config, None, ctx_attrs)
    win = egl.eglCreateWindowSurface(dpy, config, surface, None)
    assert ctx and win and egl.eglMakeCurrent(dpy, win, win, ctx), "EGL context"
    for name, key in (("vendor", GL_VENDOR), ("renderer", GL_RENDERER), ("version", GL_VERSION)):
        print(f"gl-{name}: {gl.glGetString(key).decode()}", flush=True)

    # GL's window origin is bottom-left: (0, 0, w/2, h/2) is the bottom-left quarter.
    gl.glClearColor(1.0, 0.0, 0.0, 1.0)
    gl.glClear(GL_COLOR_BUFFER_BIT)
    gl.glEnable(GL_SCISSOR_TEST)
    gl.glScissor(0, 0, width // 2, height // 2)
    gl.glClearColor(0.0, 1.0, 0.0, 1.0)
    gl.glClear(GL_COLOR_BUFFER_BIT)
    gl.glScissor(width // 2, height // 2, width - width // 2, height - height // 2)
    gl.glClearColor(0.0, 0.0, 1.0, 1.0)
    gl.glClear(GL_COLOR_BUFFER_BIT)
    gl.glDisable(GL_SCISSOR_TEST)
    assert egl.eglSwapBuffers(dpy, win), "eglSwapBuffers"
    bo = gbm.gbm_surface_lock_front_buffer(surface)
    handle = gbm.gbm_bo_get_handle(bo) & 0xFFFFFFFF
    stride = gbm.gbm_bo_get_stride(bo)
    fb = c_uint32()
    rc = drm.drmModeAddFB(fd, width, height, 24, 32, stride, handle, byref(fb))
    assert rc == 0, f"drmModeAddFB = {rc}"
    conn_id = c_uint32(conn.connector_id)
    rc = drm.drmModeSetCrtc(fd, crtc, fb.value, 0, 0, byref(conn_id), 1, byref(mode))
    assert rc == 0, f"drmModeSetCrtc = {rc}"
    print("scanned-out: 1", flush=True)
    with open(ctl_path, "r+b", buffering=0) as ctl:
        ctl.write(b"SHOT 1\n")
        assert ctl.readline().strip() == b"go"
    print("shot-taken: 1", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
