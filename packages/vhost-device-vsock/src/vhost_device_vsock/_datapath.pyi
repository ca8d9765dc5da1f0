"""The vsock data path in C: guest data to host sockets with one sendmsg straight from
guest memory, host data read straight into rx buffers; no Python object per packet."""

from collections.abc import Callable

from vhost_user_core import ChainBatch, DescriptorChain

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

def recv_into(chain: DescriptorChain, offset: int, fd: int, limit: int) -> int:
    """Read up to `limit` bytes from `fd` into the chain's writable buffers from
    `offset`: the byte count, 0 at EOF. BlockingIOError if it has nothing now, OSError
    for any other error; ValueError if the chain has no room there."""
