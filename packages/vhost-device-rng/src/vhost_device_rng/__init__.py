"""vhost-user virtio-rng backend: serves host entropy to guests, optionally rate-limited."""

from importlib.metadata import version

__version__ = version("vhost-device-rng")  # written once: in pyproject.toml
