"""Flags and the checked config they give; apart so `xtask manpages` can render them.

Upstream's spelling throughout (`-s`, `-g/--gpu-mode`, `-c/--capset`, `--use-egl BOOL`
...). This stage renders 2D: the `2d` mode (host pixel buffers) and upstream's `null`;
`virglrenderer` and `gfxstream` are refused with one line until their stage, and so
are the flags only they use. `--wayland-socket` adds the cross-domain context (capset
5) to either 2D mode.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user virtio-gpu (device ID 16) backend: 2D resources, guest blobs and the "
    "cursor, shown through QEMU's vhost-user-gpu display socket, and the Wayland "
    "cross-domain context with host blobs in vhost-user shared memory"
)
#: Modes this build serves, and the ones that are upstream's but not here yet.
MODES = ("2d", "null")
LATER_MODES = ("virglrenderer", "virgl-renderer", "gfxstream")
#: Upstream's capset names and the mode each belongs to.
CAPSETS = {
    "virgl": "virglrenderer",
    "virgl2": "virglrenderer",
    "gfxstream-vulkan": "gfxstream",
    "gfxstream-gles": "gfxstream",
}


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _capsets(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in CAPSETS:
            raise argparse.ArgumentTypeError(
                f"unknown capset {name!r} (known: {', '.join(CAPSETS)})"
            )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-gpu", description=DESCRIPTION)
    add_socket_args(parser, count=False)
    parser.add_argument(
        "-g",
        "--gpu-mode",
        required=True,
        choices=MODES + LATER_MODES,
        metavar="MODE",
        help="renderer: 2d (host pixel buffers) or null (every command checked, no "
        "pixels kept); virglrenderer and gfxstream are upstream's 3D modes, not in this "
        "version",
    )
    parser.add_argument(
        "-c",
        "--capset",
        type=_capsets,
        metavar="LIST",
        help="comma-separated capsets to offer: virgl, virgl2 (virglrenderer), "
        "gfxstream-vulkan, gfxstream-gles (gfxstream); the 2D modes have none",
    )
    for flag, default, what in (
        ("--use-egl", True, "the renderer uses EGL"),
        ("--use-glx", False, "the renderer uses GLX"),
        ("--use-gles", True, "the renderer uses GLES"),
        ("--use-surfaceless", True, "the renderer may run without a window surface"),
    ):
        parser.add_argument(
            flag,
            type=_bool,
            default=default,
            metavar="BOOL",
            help=f"{what} (3D modes; accepted and unused in 2D) (default: %(default)s)",
        )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no display: EDID is not offered and a display socket is not used; one "
        "1280x800 scanout is announced",
    )
    parser.add_argument(
        "--gpu-device",
        metavar="PATH",
        help="DRM render node for the 3D renderer (/dev/dri/renderDN); virglrenderer only",
    )
    parser.add_argument(
        "--wayland-socket",
        metavar="PATH",
        help="the host compositor's Wayland socket for the cross-domain context "
        "(capset 5): offers it with VIRGL, CONTEXT_INIT and host-visible blobs mapped "
        "through vhost-user shared memory; the only path the daemon ever connects to "
        "(crosvm's --wayland-sock)",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-gpu")
    return parser


@dataclass(frozen=True)
class GpuFlags:
    use_egl: bool = True
    use_glx: bool = False
    use_gles: bool = True
    use_surfaceless: bool = True


@dataclass(frozen=True)
class GpuConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    mode: str
    capsets: tuple[str, ...] = ()
    flags: GpuFlags = GpuFlags()
    headless: bool = False
    gpu_device: str | None = None
    #: The compositor socket of the cross-domain context's Wayland channel.
    wayland_socket: str | None = None

    def __post_init__(self) -> None:
        if self.mode in LATER_MODES:
            raise ConfigError(
                f"--gpu-mode {self.mode} is not available in this version (2D only): "
                "use -g 2d or -g null"
            )
        if self.mode not in MODES:
            raise ConfigError(f"unknown --gpu-mode {self.mode!r}")
        for name in self.capsets:
            raise ConfigError(f"capset {name} needs --gpu-mode {CAPSETS[name]}, not {self.mode}")
        if self.gpu_device is not None:
            raise ConfigError(f"--gpu-device needs --gpu-mode virglrenderer, not {self.mode}")
        if self.wayland_socket is not None and not self.wayland_socket:
            raise ConfigError("--wayland-socket needs a path")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GpuConfig:
        flags = GpuFlags(args.use_egl, args.use_glx, args.use_gles, args.use_surfaceless)
        return cls(
            args.gpu_mode, args.capset or (), flags, args.headless, args.gpu_device,
            args.wayland_socket,
        )  # fmt: skip
