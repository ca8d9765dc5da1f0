"""vhost-user virtio-spi (device ID 45): a guest's SPI transfers on a host spidev, or on
a simulated loopback controller."""

from importlib.metadata import version

__version__ = version("vhost-device-spi")  # written once: in pyproject.toml
