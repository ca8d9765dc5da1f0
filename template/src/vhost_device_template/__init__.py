"""A loopback device: the smallest complete vhost-user backend, meant to be copied."""

__version__ = "0.1.0"
