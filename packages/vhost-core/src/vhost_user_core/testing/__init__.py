"""Test support: the pytest plugin, the QEMU guest runner and an in-process harness."""
