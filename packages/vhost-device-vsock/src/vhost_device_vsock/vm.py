"""What outlives a vhost-user connection: one VM's host side and its sibling inbox,
and the map of the process's VMs by CID.

A daemon builds a fresh `VsockBackend` for every VMM connection; the VM it serves
stays. Its host listeners keep queueing host connections while no VMM is connected,
and siblings find it by CID. A sibling's packet goes into the VM's inbox (bounded) and
from there into the guest's rx queue at once, by the sender's own thread if the
receiving backend is idle (`Worker.call_now`), else by its worker as soon as it is
done with what it is doing.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .config import VmConfig
from .errors import ConfigError
from .hostside import HostSide, host_side
from .inbox import SiblingInbox
from .packet import Header

if TYPE_CHECKING:
    from .device import VsockBackend

log = logging.getLogger(__name__)

#: Bytes of sibling packets (headers too) one VM may have waiting; more are refused
#: (the sender's connection is reset). Credit keeps well-behaved guests far below this.
INBOX_LIMIT = 4 << 20


class VirtualMachine:
    def __init__(self, config: VmConfig, siblings: SiblingMap) -> None:
        self.config = config
        self.cid = config.guest_cid
        self.groups = frozenset(config.groups)
        self.siblings = siblings
        self.host: HostSide = host_side(config)
        self._lock = threading.Lock()
        self._backend: VsockBackend | None = None
        #: Sibling packets for the guest; its backend's rx side takes them from here
        #: directly (looked at for every rx buffer, so no wrapper calls).
        self.inbox = SiblingInbox(INBOX_LIMIT)
        siblings.add(self)

    def new_backend(self) -> VsockBackend:
        """The daemon's backend factory: one per VMM connection."""
        from .device import VsockBackend

        return VsockBackend(self)

    def attach(self, backend: VsockBackend) -> None:
        with self._lock:
            self._backend = backend
            self.inbox.clear()

    def detach(self, backend: VsockBackend) -> None:
        with self._lock:
            if self._backend is backend:
                self._backend = None
                self.inbox.clear()

    def deliver(self, header: Header, payload: bytes) -> bool:
        """A sibling's packet for this guest (any thread). False if it cannot be
        taken: no VMM connected, or the inbox is full."""
        with self._lock:
            backend = self._backend
            if backend is None or not self.inbox.put(header, payload):
                return False
        backend.sibling_packet_arrived()
        return True

    def close(self) -> None:
        self.siblings.remove(self)
        self.host.close()


class SiblingMap:
    """The process's VMs by guest CID (all share one map, as upstream)."""

    def __init__(self) -> None:
        self._vms: dict[int, VirtualMachine] = {}

    def add(self, vm: VirtualMachine) -> None:
        if vm.cid in self._vms:
            raise ConfigError(f"guest CID {vm.cid} is used twice")
        self._vms[vm.cid] = vm

    def remove(self, vm: VirtualMachine) -> None:
        self._vms.pop(vm.cid, None)

    def route(self, source: VirtualMachine, cid: int) -> VirtualMachine | None:
        """The VM `source` may reach at `cid`: another VM sharing a group with it."""
        target = self._vms.get(cid)
        if target is None or target is source or not (target.groups & source.groups):
            return None
        return target
