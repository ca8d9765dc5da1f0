"""vhost-user gpu device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-gpu")  # written once: in pyproject.toml
