"""vhost-user can device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-can")  # written once: in pyproject.toml
