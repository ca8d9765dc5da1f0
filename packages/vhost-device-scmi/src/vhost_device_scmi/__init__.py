"""vhost-user scmi device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-scmi")  # written once: in pyproject.toml
