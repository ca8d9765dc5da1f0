"""vhost-user virtio-snd backend with per-direction enable switches and a control socket."""

from importlib.metadata import version

__version__ = version("vhost-device-sound")  # written once: in pyproject.toml
