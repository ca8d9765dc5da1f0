"""vhost-user virtio-rng backend: serves host entropy to guests, optionally rate-limited."""

__version__ = "0.1.0"
