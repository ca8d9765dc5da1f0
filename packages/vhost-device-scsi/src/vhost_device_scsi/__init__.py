"""vhost-user scsi device backend."""

from importlib.metadata import version

__version__ = version("vhost-device-scsi")  # written once: in pyproject.toml
