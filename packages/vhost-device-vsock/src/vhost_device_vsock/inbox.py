"""A VM's inbox: sibling VMs' packets waiting for its guest's rx buffers.

Any sibling's worker puts packets in; the VM's own rx side takes them out. They wait
only while the guest has no rx buffer free: the sender fills the guest's ring itself
when it can (`Worker.call_now`). What waits is taken control packets first (RESPONSE,
RST, SHUTDOWN, CREDIT_UPDATE, ...: anything without payload), then data, in arrival
order each; but a control packet of a connection that still has data waiting goes
behind that data, so every connection's packets keep the order they were sent in.
So a SHUTDOWN waits only for the data it follows, never for another connection's.
"""

from __future__ import annotations

import threading
from collections import deque

from .packet import HEADER_SIZE, Header, Op, SeqFlag

#: A connection as the receiving guest sees it: (peer CID, peer port, its own port).
Key = tuple[int, int, int]
Packet = tuple[Header, bytes]


def _key(header: Header) -> Key:
    return header.src_cid, header.src_port, header.dst_port


class SiblingInbox:
    """Bounded and thread-safe; `limit` counts payload and header bytes, so a flood
    of control packets is bounded too."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._control: deque[Packet] = deque()
        self._data: deque[Packet] = deque()
        #: Packets in `_data` per connection: its control packets must follow them.
        self._waiting: dict[Key, int] = {}
        self._bytes = 0

    def __bool__(self) -> bool:
        return bool(self._control or self._data)

    def buffers_wanted(self, most: int) -> int:
        """How many rx buffers what waits needs, at most `most`: one per control
        packet, `most` once data waits (a data packet may take several)."""
        return most if self._data else min(len(self._control), most)

    def put(self, header: Header, payload: bytes) -> bool:
        """Queue a packet; False if the inbox is full."""
        size = HEADER_SIZE + len(payload)
        key = _key(header)
        with self._lock:
            if self._bytes + size > self.limit:
                return False
            self._bytes += size
            if header.op != Op.RW and key not in self._waiting:
                self._control.append((header, payload))
                return True
            self._data.append((header, payload))
            self._waiting[key] = self._waiting.get(key, 0) + 1
            return True

    def get(self, room: int) -> Packet | None:
        """The next packet to deliver, with at most `room` bytes of payload, or None.
        The rest of a longer one stays first in line (a Linux guest sends up to 64 KiB
        per packet but posts 4 KiB rx buffers), split under the lock so that nothing
        of its connection can overtake it."""
        with self._lock:
            if self._control:
                header, payload = self._control.popleft()
            elif self._data:
                header, payload = self._data[0]
                if len(payload) > room:
                    rest = header._replace(len=len(payload) - room)
                    self._data[0] = (rest, payload[room:])
                    header = header._replace(
                        len=room, flags=header.flags & ~(SeqFlag.EOM | SeqFlag.EOR)
                    )
                    payload = payload[:room]
                    self._bytes -= room
                    return header, payload
                self._data.popleft()
                key = _key(header)
                left = self._waiting[key] - 1
                if left:
                    self._waiting[key] = left
                else:
                    del self._waiting[key]
            else:
                return None
            self._bytes -= HEADER_SIZE + len(payload)
            return header, payload

    def clear(self) -> None:
        with self._lock:
            self._control.clear()
            self._data.clear()
            self._waiting.clear()
            self._bytes = 0
