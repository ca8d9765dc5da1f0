"""vhost-user console device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-console")  # written once: in pyproject.toml
