"""vhost-user i2c device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-i2c")  # written once: in pyproject.toml
