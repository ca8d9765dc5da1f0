"""Credit-based flow control of one vsock connection (virtio 1.3 §5.10.6.3), no I/O:
what each side may still send, and when the guest must hear of freed buffer space.
Counters are 32-bit and wrap."""

class Credit:
    #: Bytes buffered for the host per connection (the credit the guest gets).
    buf_alloc: int
    #: Bytes of the guest's handed to the host peer.
    fwd_cnt: int
    #: The fwd_cnt in the last header sent to the guest.
    advertised_fwd_cnt: int
    peer_buf_alloc: int
    peer_fwd_cnt: int
    #: Payload bytes sent to the guest.
    tx_cnt: int
    def __init__(self, buf_alloc: int, peer_buf_alloc: int = 0, peer_fwd_cnt: int = 0) -> None: ...
    def forwarded(self, nbytes: int) -> None: ...
    def advertised(self) -> tuple[int, int]:
        """(buf_alloc, fwd_cnt) for a header about to be sent; records what the guest
        will know."""
    def guest_may_send(self, held: int) -> int:
        """How much the guest believes it may still send, with `held` bytes of its
        still waiting for the host peer."""
    def update_due(self, held: int) -> bool:
        """Whether to send a CREDIT_UPDATE now: the host took bytes the guest has not
        heard of, and the guest believes less than half the buffer is free."""
    def within_window(self, held: int) -> bool:
        """Whether the guest respected our buf_alloc (it holds no more than it)."""
    def peer_update(self, buf_alloc: int, fwd_cnt: int) -> None: ...
    def peer_free(self) -> int:
        """What we may still send the guest."""
    def sent(self, nbytes: int) -> None: ...
