"""Credit-based flow control of one vsock connection (virtio 1.3 §5.10.6.3), no I/O.

Each side tells the other how much it can buffer (buf_alloc) and how many bytes it has
consumed so far (fwd_cnt); a sender keeps (bytes sent - peer's fwd_cnt) within the
peer's buf_alloc. Counters are 32-bit and wrap.

Both directions live here, seen from the device:
- guest -> host: the guest sends within our `buf_alloc`; `forwarded()` counts what the
  host peer took, and `update_due()` says when the guest must hear about it, so a guest
  blocked on credit always gets an update (upstream's hang, #494) without one being
  sent for every packet.
- host -> guest: `peer_free()` is what we may still send; `sent()` counts it.
"""

from __future__ import annotations

MASK = 0xFFFF_FFFF


class Credit:
    __slots__ = (
        "buf_alloc",
        "fwd_cnt",
        "advertised_fwd_cnt",
        "peer_buf_alloc",
        "peer_fwd_cnt",
        "tx_cnt",
    )

    def __init__(self, buf_alloc: int, peer_buf_alloc: int = 0, peer_fwd_cnt: int = 0) -> None:
        self.buf_alloc = buf_alloc
        #: Bytes of the guest's we handed to the host peer.
        self.fwd_cnt = 0
        #: The fwd_cnt in the last header we sent the guest.
        self.advertised_fwd_cnt = 0
        self.peer_buf_alloc = peer_buf_alloc
        self.peer_fwd_cnt = peer_fwd_cnt
        #: Payload bytes we sent the guest.
        self.tx_cnt = 0

    # guest -> host
    def forwarded(self, nbytes: int) -> None:
        self.fwd_cnt = (self.fwd_cnt + nbytes) & MASK

    def advertised(self) -> tuple[int, int]:
        """(buf_alloc, fwd_cnt) for a header about to be sent; records what the guest
        will know."""
        self.advertised_fwd_cnt = self.fwd_cnt
        return self.buf_alloc, self.fwd_cnt

    def guest_may_send(self, held: int) -> int:
        """How much the guest believes it may still send, with `held` bytes of its
        still waiting for the host peer."""
        unadvertised = (self.fwd_cnt - self.advertised_fwd_cnt) & MASK
        return self.buf_alloc - held - unadvertised

    def update_due(self, held: int) -> bool:
        """Whether to send a CREDIT_UPDATE now: the host took bytes the guest has not
        heard of, and the guest believes less than half the buffer is free. A guest
        blocked on credit believes nothing is free, so it is always told."""
        fwd_cnt, advertised = self.fwd_cnt, self.advertised_fwd_cnt
        if fwd_cnt == advertised:
            return False
        # guest_may_send(held), inline: this runs once per guest packet.
        return self.buf_alloc - held - ((fwd_cnt - advertised) & MASK) < self.buf_alloc // 2

    def within_window(self, held: int) -> bool:
        """Whether the guest respected our buf_alloc (it holds no more than it)."""
        return held <= self.buf_alloc

    # host -> guest
    def peer_update(self, buf_alloc: int, fwd_cnt: int) -> None:
        self.peer_buf_alloc = buf_alloc
        self.peer_fwd_cnt = fwd_cnt

    def peer_free(self) -> int:
        in_flight = (self.tx_cnt - self.peer_fwd_cnt) & MASK
        return max(self.peer_buf_alloc - in_flight, 0)

    def sent(self, nbytes: int) -> None:
        self.tx_cnt = (self.tx_cnt + nbytes) & MASK
