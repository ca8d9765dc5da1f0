"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── VsockError              anything vhost_device_vsock raises on purpose
        ├── ConfigError         a VM description is malformed, out of range, or clashes
        │                       with another VM's (command line, --vm, config file)
        ├── HostSideError       a VM's host side cannot be set up: `cid`
        │                       (also a BackendError: a host-side failure)
        ├── HandshakeError      a host program's first line is not `CONNECT <port>`
        │                       (also a ValueError: it is a parse error)
        └── GuestOverrun        the guest sent more than its credit allowed, on the
                                connection `key` (local port, guest port): `held`
                                bytes against a `window` of buf_alloc

ConfigError and HostSideError end the daemon at start-up; HandshakeError drops that
host program and GuestOverrun resets that connection: neither ever reaches the worker's
caller.
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class VsockError(VhostUserError):
    """Base of every error vhost_device_vsock raises on purpose."""


class ConfigError(VsockError):
    """A VM description is malformed, out of range, or clashes with another VM's."""


class HostSideError(VsockError, BackendError):
    """The host side of the VM with guest CID `cid` cannot be set up (a listener, the
    hybrid socket)."""

    def __init__(self, cid: int, what: str) -> None:
        super().__init__(f"VM with CID {cid}: {what}")
        self.cid = cid


class HandshakeError(VsockError, ValueError):
    """A host program's first line is not `CONNECT <port>`."""


class GuestOverrun(VsockError):
    """The guest sent more than its credit allowed on connection `key`."""

    def __init__(self, key: tuple[int, int], held: int, window: int, what: str) -> None:
        super().__init__(what)
        self.key = key
        self.held = held
        self.window = window
