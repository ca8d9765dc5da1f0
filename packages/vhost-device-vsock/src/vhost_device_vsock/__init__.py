"""vhost-user virtio-vsock device backend (hybrid vsock over Unix sockets)."""

from importlib.metadata import version

__version__ = version("vhost-device-vsock")  # written once: in pyproject.toml
