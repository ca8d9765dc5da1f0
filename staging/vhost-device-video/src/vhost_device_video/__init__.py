"""vhost-user video device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-video")  # written once: in pyproject.toml
