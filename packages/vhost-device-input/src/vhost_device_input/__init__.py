"""vhost-user input device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-input")  # written once: in pyproject.toml
