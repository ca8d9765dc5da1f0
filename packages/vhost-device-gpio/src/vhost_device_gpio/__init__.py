"""vhost-user gpio device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-gpio")  # written once: in pyproject.toml
