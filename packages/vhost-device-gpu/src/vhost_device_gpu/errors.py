"""The errors this package raises on purpose, rooted in the core's tree::

VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
└── GpuError                anything vhost_device_gpu raises on purpose
    ├── ConfigError         flags that do not fit together (before any socket opens;
    │                       also a ValueError)
    ├── VirglInitError      renderer.virgl: virglrenderer cannot start with the flags
    │                       given (probed before any socket opens)
    └── CommandError        renderer.base: a guest command refused with the spec's
                            `status` (the device answers it; the daemon goes on)
"""

from __future__ import annotations

from vhost_user_core import VhostUserError


class GpuError(VhostUserError):
    """Base of every error vhost_device_gpu raises on purpose."""


class ConfigError(GpuError, ValueError):
    """The command line asks for something this daemon cannot do."""
