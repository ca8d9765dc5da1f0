# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The vsock data path in C: guest data to host sockets, host data into rx buffers.

Why C: with the default 64 KiB buffer a guest's whole window is one packet, so every
packet waits a credit round trip, and the daemon's Python per packet (header decode,
connection lookup, memoryviews, socket.sendmsg / recvmsg_into) was about a third of
that trip.

`forward` walks a popped tx batch in order. A packet that is plainly data for a
connection that can take it at once (RW from the guest's CID to the host, with no more
payload than its buffer holds, for a connection whose `takes_data_now` is true) goes to
the host socket with one sendmsg straight from guest memory, the GIL released, and the
connection's credit moves. Any other packet goes to `slow(chain)`, the device's Python
path, unchanged: control packets, SEQPACKET, malformed or foreign packets, data for a
connection that holds earlier bytes back. What the host socket did not take at once goes
to `rest(conn, chain, result)`, with `result` the bytes it took or -errno.

`recv_into` is the other direction's one syscall: recvmsg from a host socket straight
into an rx chain's writable buffers.
"""

import os

from libc.errno cimport EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from posix.uio cimport iovec

from vhost_user_core.memory cimport Segment
from vhost_user_core.virtqueue cimport ChainBatch, ChainInfo, DescriptorChain, chain_read

# Cython ships no declarations for these two headers.
cdef extern from "<endian.h>" nogil:
    uint16_t le16toh(uint16_t)
    uint32_t le32toh(uint32_t)
    uint64_t le64toh(uint64_t)

cdef extern from "<sys/socket.h>" nogil:
    struct msghdr:
        void* msg_name
        unsigned int msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t sendmsg(int fd, const msghdr* msg, int flags)
    ssize_t recvmsg(int fd, msghdr* msg, int flags)
    enum:
        MSG_DONTWAIT
        MSG_NOSIGNAL

# struct virtio_vsock_hdr (virtio 1.3 5.10.6), little-endian on the wire.
cdef packed struct vsock_hdr:
    uint64_t src_cid
    uint64_t dst_cid
    uint32_t src_port
    uint32_t dst_port
    uint32_t len
    uint16_t type
    uint16_t op
    uint32_t flags
    uint32_t buf_alloc
    uint32_t fwd_cnt

cdef enum:
    _HEADER_SIZE = 44  # sizeof(vsock_hdr)
    _CID_HOST = 2
    _TYPE_STREAM = 1
    _OP_RW = 5
    # iovecs per sendmsg / recvmsg; a packet in more pieces than this is sent in
    # part and the rest held, a buffer is filled in part (a Linux guest's 64 KiB
    # packet is at most 17 pieces, its rx buffers one).
    _MAX_IOV = 256


cdef size_t _iovecs(Segment* segs, uint32_t first, uint32_t count, uint64_t skip,
                    uint64_t length, iovec* iov) noexcept nogil:
    """Fill `iov` with the `length` bytes after the first `skip` of the segments."""
    cdef size_t n = 0
    cdef uint32_t s = first
    cdef uint64_t take
    cdef Segment* seg
    while length and s < first + count and n < _MAX_IOV:
        seg = &segs[s]
        s += 1
        if skip >= seg.len:
            skip -= seg.len
            continue
        take = seg.len - skip if seg.len - skip < length else length
        iov[n].iov_base = seg.ptr + skip
        iov[n].iov_len = take
        n += 1
        length -= take
        skip = 0
    return n


cdef ssize_t _transfer(int fd, iovec* iov, size_t n, bint send) noexcept nogil:
    """One non-blocking sendmsg or recvmsg of the iovecs: bytes moved, or -errno."""
    cdef msghdr msg
    cdef ssize_t done
    msg.msg_name = NULL
    msg.msg_namelen = 0
    msg.msg_iov = iov
    msg.msg_iovlen = n
    msg.msg_control = NULL
    msg.msg_controllen = 0
    msg.msg_flags = 0
    while True:
        if send:
            done = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)
        else:
            done = recvmsg(fd, &msg, MSG_DONTWAIT)
        if done >= 0:
            return done
        if errno != EINTR:
            return -errno


def forward(ChainBatch batch not None, dict conns not None, uint64_t cid,
            set touched not None, slow, rest):
    """Forward the batch's packets in order (see the module doc). Connections whose
    credit moved are added to `touched`."""
    cdef int i
    cdef ChainInfo* info
    cdef vsock_hdr hdr
    cdef uint64_t length
    cdef ssize_t result
    cdef int fd
    cdef iovec iov[_MAX_IOV]
    cdef size_t n
    for i in range(batch.count):
        info = &batch.chains[i]
        conn = None
        if (
            info.error == 0
            and chain_read(batch, info, 0, <uint8_t*>&hdr, _HEADER_SIZE) == _HEADER_SIZE
            and le16toh(hdr.op) == _OP_RW
            and le16toh(hdr.type) == _TYPE_STREAM
            and le64toh(hdr.src_cid) == cid
            and le64toh(hdr.dst_cid) == _CID_HOST
            and 0 < le32toh(hdr.len) <= info.read_len - _HEADER_SIZE
        ):
            conn = conns.get((le32toh(hdr.dst_port), le32toh(hdr.src_port)))
        if conn is None or not conn.takes_data_now:
            slow(batch[i])
            continue
        credit = conn.credit
        credit.peer_update(le32toh(hdr.buf_alloc), le32toh(hdr.fwd_cnt))
        touched.add(conn)
        fd = conn.fd
        length = le32toh(hdr.len)
        with nogil:
            n = _iovecs(batch.segs, info.first_seg, info.n_read, _HEADER_SIZE, length, iov)
            result = _transfer(fd, iov, n, True)
        if result > 0:
            credit.forwarded(result)
        if result != <ssize_t>length:
            rest(conn, batch[i], result)


def recv_into(DescriptorChain chain not None, uint64_t offset, int fd, uint64_t limit):
    """Read up to `limit` bytes from `fd` into the chain's writable buffers from
    `offset`: the byte count, 0 at EOF. BlockingIOError if it has nothing now, OSError
    for any other error."""
    cdef ChainInfo* info = chain.info
    cdef iovec iov[_MAX_IOV]
    cdef size_t n
    cdef ssize_t got
    n = _iovecs(chain.batch.segs, info.first_seg + info.n_read, info.n_write, offset,
                limit, iov)
    if n == 0:
        raise ValueError("no room in the chain to read into")  # 0 would read as EOF
    with nogil:
        got = _transfer(fd, iov, n, False)
    if got < 0:
        raise OSError(-got, os.strerror(-got))  # BlockingIOError for EAGAIN
    return got
