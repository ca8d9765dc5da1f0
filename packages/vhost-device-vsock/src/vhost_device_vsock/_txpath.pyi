"""The guest's data packets for open stream connections, forwarded to the host in C:
one sendmsg straight from guest memory, no Python object per packet."""

from collections.abc import Callable

from vhost_user_core.virtqueue import ChainBatch, DescriptorChain

from .connection import VsockConnection

def forward(
    batch: ChainBatch,
    conns: dict[tuple[int, int], VsockConnection],
    cid: int,
    touched: set[VsockConnection],
    slow: Callable[[DescriptorChain], None],
    rest: Callable[[VsockConnection, DescriptorChain, int], None],
) -> None:
    """Forward the batch's packets in order: data for a connection that
    `takes_data_now` goes straight to its host socket (its credit moves and it joins
    `touched`); any other packet goes to `slow`; what the host socket did not take at
    once goes to `rest` with the bytes it took, or -errno."""
