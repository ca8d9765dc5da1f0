"""A loopback device: the smallest complete vhost-user backend, meant to be copied."""

from importlib.metadata import version

__version__ = version("vhost-device-template")  # written once: in pyproject.toml
