# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The vsock data path in C: a connection's per-packet state, the tx queue's common
case on the core's fast-path hook, and host data read straight into rx buffers.

Why C: with the default 64 KiB buffer a guest's whole window is one packet, so every
packet waits a credit round trip (tx kick, sendmsg, CREDIT_UPDATE into an rx buffer,
two interrupts), and the Python on that trip (the worker's dispatch, the ring API,
header codecs, credit arithmetic, about 50 k instructions a packet) was most of it.

`TxFastPath.serve` walks the tx ring in order and takes the longest prefix of packets
it can finish at once: RW data from the guest's CID to the host, on an established
stream connection that takes data now (`ConnectionState.takes_data_now`), with no
more payload than its buffer holds, sent to the host socket with one sendmsg straight
from guest memory (the GIL released); and CREDIT_UPDATE on an existing connection.
What a host socket does not take at once goes to the Python path's
`TxInterpreter._rest_of_data` (it keeps the rest, or resets the connection). The
first packet it does not take, and everything after it, stay on the ring for
`TxInterpreter.process`, in order: control packets, SEQPACKET, sibling VMs, anything
malformed. After each batch it does what the Python path does after one: credit
updates the guest is due, written into rx buffers here unless the rx side has other
packets waiting (then they queue behind those), reading resumed for connections whose
credit grew, the tx buffers returned, and one interrupt per ring, rx first.

`HostReader` is a connection's readable callback: host data goes straight into rx
buffers with one recvmsg each, header and credit written here, while nothing else
waits for rx buffers; else the Python `RxFiller` takes over, which keeps the order
and the round robin between connections.
"""

import os

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy
from posix.uio cimport iovec

from vhost_user_core.fastpath cimport (
    InflightLog, QueueFastPath, avail_count, avail_head, complete_batch, reuse_batch,
    signal_fd, walk_avail,
)
from vhost_user_core.memory cimport Segment
from vhost_user_core.ring cimport vring_used_elem
from vhost_user_core.virtqueue cimport ChainBatch, ChainInfo, DescriptorChain, Virtqueue, chain_read

from .credit cimport Credit

# Cython ships no declarations for these two headers.
cdef extern from "<endian.h>" nogil:
    uint16_t le16toh(uint16_t)
    uint32_t le32toh(uint32_t)
    uint64_t le64toh(uint64_t)
    uint16_t htole16(uint16_t)
    uint32_t htole32(uint32_t)
    uint64_t htole64(uint64_t)

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
    _TYPE_SEQPACKET = 2
    _OP_RW = 5
    _OP_SHUTDOWN = 4
    _OP_CREDIT_UPDATE = 6
    _SHUT_RCV = 1
    _SHUT_SEND = 2
    _ESTABLISHED = 3
    # iovecs per sendmsg / recvmsg; a packet in more pieces than this is sent in
    # part and the rest held, a buffer is filled in part (a Linux guest's 64 KiB
    # packet is at most 17 pieces, its rx buffers one).
    _MAX_IOV = 256

#: `State.ESTABLISHED`'s value (connection.py takes it from here): the one state the
#: C paths move data in.
ESTABLISHED = _ESTABLISHED


cdef class ConnectionState:
    """What the C paths read and change of a connection (`VsockConnection` adds the
    rest): ports, socket, state, credit, the guest's bytes held back, watches."""

    cdef public uint32_t local_port, peer_port
    cdef public object key
    cdef public bint seqpacket
    cdef public int fd
    cdef object _state
    cdef int _state_code
    cdef public Credit credit
    cdef public object held
    cdef public Py_ssize_t held_bytes
    cdef public object message
    cdef public object from_host
    cdef public int guest_shut
    cdef public bint host_eof, watching_read, ready

    @property
    def state(self):
        return self._state

    @state.setter
    def state(self, value):
        self._state = value
        self._state_code = value.value

    cdef inline bint _takes_data_now(self):
        return (
            self._state_code == _ESTABLISHED
            and not self.guest_shut & _SHUT_SEND
            and not self.seqpacket
            and len(self.held) == 0
        )

    @property
    def takes_data_now(self):
        """An established stream the guest may still send on, holding nothing back: a
        data packet can go straight to the host socket (the tx fast path's test)."""
        return self._takes_data_now()

    cdef inline bint _may_read(self):
        """rx.RxFiller.want_read's test: reading the host socket could give the guest
        data now."""
        return (
            self._state_code == _ESTABLISHED
            and not self.host_eof
            and not self.guest_shut & _SHUT_RCV
            and self.credit.peer_free() > 0
        )


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


cdef void _write_header(ChainBatch batch, ChainInfo* info, const vsock_hdr* hdr) noexcept nogil:
    """The header into the first bytes of the chain's writable buffers (room checked)."""
    cdef const uint8_t* src = <const uint8_t*>hdr
    cdef uint64_t left = _HEADER_SIZE, take
    cdef uint32_t s = info.first_seg + info.n_read
    cdef uint32_t end = s + info.n_write
    cdef Segment* seg
    while left and s < end:
        seg = &batch.segs[s]
        s += 1
        take = seg.len if seg.len < left else left
        memcpy(seg.ptr, src, take)
        src += take
        left -= take


cdef void _host_header(vsock_hdr* hdr, ConnectionState conn, uint64_t cid, uint16_t op,
                       uint32_t length, uint32_t flags=0) noexcept:
    """A header from the host side of `conn` to the guest, with its current credit."""
    cdef uint32_t buf_alloc, fwd_cnt
    conn.credit.advertise(&buf_alloc, &fwd_cnt)
    hdr.src_cid = htole64(_CID_HOST)
    hdr.dst_cid = htole64(cid)
    hdr.src_port = htole32(conn.local_port)
    hdr.dst_port = htole32(conn.peer_port)
    hdr.len = htole32(length)
    hdr.type = htole16(_TYPE_SEQPACKET if conn.seqpacket else _TYPE_STREAM)
    hdr.op = htole16(op)
    hdr.flags = htole32(flags)
    hdr.buf_alloc = htole32(buf_alloc)
    hdr.fwd_cnt = htole32(fwd_cnt)


cdef enum:
    # RxRing.read_host's answers.
    _MORE = 0      # a buffer filled to its limit: the socket may have more
    _DRAINED = 1   # the socket has nothing more now
    _PAUSED = 2    # no longer watched: no credit (the guest's update resumes it) or EOF
    _PYTHON = 3    # the Python path's case: no buffer, an error, not a plain stream


cdef class RxRing:
    """The device's rx queue as the C paths use it: one buffer at a time, while the
    Python `RxFiller` has nothing waiting (its control packets and ready connections
    go first, in its order)."""

    cdef object device
    cdef object filler
    cdef dict conns
    cdef object control, ready, inbox_control, inbox_data
    cdef ChainBatch _batch
    cdef uint16_t _cap
    # Chains avail_count found that are still to be taken, valid while the ring's
    # next_avail is `_next` (the Python path may pop or rewind in between).
    cdef uint16_t _left, _next
    cdef bint dirty
    cdef readonly uint64_t packets  # host data packets written here
    # Set by `RxFiller.fill` while it holds popped rx buffers.
    cdef public bint busy

    def __init__(self, device):
        self.device = device
        self.filler = device.rx_filler
        self.conns = device.conns
        self.control = self.filler.control
        self.ready = self.filler.ready
        inbox = device.vm.inbox
        self.inbox_control = inbox._control
        self.inbox_data = inbox._data
        self._batch = None
        self._cap = 0
        self._left = 0
        self._next = 0
        self.dirty = False
        self.packets = 0
        self.busy = False

    cdef bint python_waits(self):
        """Whether the Python rx side has packets waiting for buffers."""
        return (
            len(self.control) != 0
            or len(self.ready) != 0
            or len(self.inbox_control) != 0
            or len(self.inbox_data) != 0
        )

    cdef Virtqueue usable(self):
        """The rx Virtqueue if the C paths may take its buffers, else None."""
        cdef object vring = self.device.rx
        cdef Virtqueue q
        if vring is None or not vring._started or not vring._enabled:
            return None
        if vring._inflight is not None or vring._resubmit:
            return None
        q = vring._queue
        if q.desc == NULL or q._broken:
            return None
        return q

    cdef ChainInfo* take(self, Virtqueue q, uint64_t room) except? NULL:
        """The next rx buffer, popped, if the guest posted one with `room` bytes or
        more; NULL if none (a malformed one stays on the ring for the Python path,
        which reports it)."""
        cdef int count
        cdef uint16_t head
        cdef ChainBatch batch
        cdef ChainInfo* info
        if self._left == 0 or q.next_avail != self._next:
            count = avail_count(q)  # every head checked once, not once per buffer
            self._left = count if count > 0 else 0
            if count <= 0:
                return NULL
        head = avail_head(q, 0)
        if head >= q._size:  # rewritten since it was checked: the Python path reports it
            self._left = 0
            return NULL
        batch = self._batch = reuse_batch(self._batch, 1, &self._cap)
        batch.pins = q.pins
        if q._walk(batch, head) < 0:
            raise MemoryError()
        info = &batch.chains[0]
        if info.error or info.write_len < room:
            self._left = 0
            return NULL
        q.next_avail = <uint16_t>(q.next_avail + 1)
        self._left -= 1
        self._next = q.next_avail
        return info

    cdef void untake(self, Virtqueue q) noexcept:
        """Put the buffer `take` gave back on the ring, unused."""
        q.next_avail = <uint16_t>(q.next_avail - 1)
        self._left += 1
        self._next = q.next_avail

    cdef int used(self, Virtqueue q, ChainInfo* info, uint32_t length) except -1:
        q.push_used(info.head, length)
        self.dirty = True
        return 0

    cpdef int send_control(self, ConnectionState conn, uint16_t op, uint32_t flags=0) except -1:
        """A control packet for `conn` (RESPONSE, RST, SHUTDOWN, CREDIT_UPDATE, REQUEST)
        into the next rx buffer, or queued behind what the Python side has waiting."""
        cdef vsock_hdr hdr
        _host_header(&hdr, conn, self.device.cid, op, 0, flags)
        return self._put(&hdr)

    cpdef int put_control(self, bytes packet) except -1:
        """A whole header-only packet (a reply to a packet of no connection), as
        `send_control` puts one."""
        if len(packet) != _HEADER_SIZE:
            raise ValueError(f"a control packet is {_HEADER_SIZE} bytes, not {len(packet)}")
        return self._put(<const vsock_hdr*><const char*>packet)

    cdef int _put(self, const vsock_hdr* hdr) except -1:
        cdef Virtqueue q = None
        cdef ChainInfo* info = NULL
        # Not while the Python side holds popped buffers (`busy`, it would rewind past
        # this one), nor ahead of what it has waiting.
        if not self.busy and not self.python_waits():
            q = self.usable()
            if q is not None:
                info = self.take(q, _HEADER_SIZE)
        if info == NULL:
            self.filler._queue_control(PyBytes_FromStringAndSize(<const char*>hdr, _HEADER_SIZE))
            return 0
        _write_header(self._batch, info, hdr)
        return self.used(q, info, _HEADER_SIZE)

    cdef int read_host(self, ConnectionState conn, Virtqueue q) except -1:
        """One rx buffer of `conn`'s host data, read straight into it with its header:
        _MORE (filled to the credit or the buffer: there may be more), _DRAINED (the
        socket has no more now), _PAUSED (the socket is no longer watched: the guest
        can take no more now, or the host peer's EOF has gone to the guest as a
        SHUTDOWN), or _PYTHON (anything else: a connection that is not a plain open
        stream, no buffer; an error has reset it)."""
        cdef ChainInfo* info
        cdef ChainBatch batch
        cdef vsock_hdr hdr
        cdef uint64_t limit
        cdef iovec iov[_MAX_IOV]
        cdef size_t niov
        cdef ssize_t got
        cdef int fd = conn.fd
        if (
            conn._state_code != _ESTABLISHED
            or conn.host_eof
            or conn.guest_shut & _SHUT_RCV
            or conn.seqpacket
            or conn.from_host is not None
        ):
            return _PYTHON
        limit = conn.credit.peer_free()
        if limit == 0:
            # Readable and unread, it would wake the worker again and again.
            self.filler.unwatch_read(conn)
            return _PAUSED
        info = self.take(q, _HEADER_SIZE + 1)
        if info == NULL:
            return _PYTHON
        batch = self._batch
        if limit > info.write_len - _HEADER_SIZE:
            limit = info.write_len - _HEADER_SIZE
        with nogil:
            niov = _iovecs(batch.segs, info.first_seg + info.n_read, info.n_write,
                           _HEADER_SIZE, limit, iov)
            got = _transfer(fd, iov, niov, False)
        if got <= 0:
            self.untake(q)
            if got == -EAGAIN:  # EWOULDBLOCK on Linux
                return _DRAINED
            if got < 0:
                self.device.host_gone(conn, OSError(-got, os.strerror(-got)))
                return _PYTHON
            # EOF: the guest hears SHUTDOWN(SEND); an EOF stays readable, so unwatched.
            self.filler.unwatch_read(conn)
            conn.host_eof = True
            self.send_control(conn, _OP_SHUTDOWN, _SHUT_SEND)
            return _PAUSED
        _host_header(&hdr, conn, self.device.cid, _OP_RW, <uint32_t>got)
        _write_header(batch, info, &hdr)
        conn.credit.sent(<uint32_t>got)
        self.used(q, info, <uint32_t>(_HEADER_SIZE + got))
        self.packets += 1
        return _MORE if <uint64_t>got == limit else _DRAINED

    cpdef int signal(self) except -1:
        """The rx interrupt, if buffers were used here since the last and the guest
        wants it."""
        cdef object vring
        cdef Virtqueue q
        if not self.dirty:
            return 0
        self.dirty = False
        vring = self.device.rx
        if vring is None:
            return 0
        q = vring._queue
        if q.notify_due():
            signal_fd(vring._call_fd)
        return 0


cdef class RxFastPath(QueueFastPath):
    """The rx queue's kick (the guest posted buffers) while only connections with host
    data wait for them: their data read in C, round robin as `RxFiller.fill` does.
    Control and sibling packets waiting, or any connection the C path does not read,
    leave the kick to `handle_queue`."""

    cdef RxRing rx

    def __init__(self, RxRing rx not None):
        self.rx = rx

    cdef int serve(self, object vring, Virtqueue q, InflightLog log) except -1:
        cdef RxRing rx = self.rx
        cdef object ready = rx.ready
        cdef ConnectionState conn
        cdef int r
        if (
            log is not None
            or rx.usable() is not q
            or len(rx.control) != 0
            or len(rx.inbox_control) != 0
            or len(rx.inbox_data) != 0
        ):
            return 1
        try:
            while len(ready) != 0:
                conn = <ConnectionState>ready[0]
                if not conn.ready or rx.conns.get(conn.key) is not conn:
                    ready.popleft()
                    conn.ready = False
                    continue
                r = rx.read_host(conn, q)
                if r == _PYTHON:
                    return 1
                if r == _MORE:
                    if len(ready) > 1:
                        ready.rotate(-1)  # after the others had their turn
                    continue
                ready.popleft()
                conn.ready = False
                if r == _DRAINED:
                    rx.filler.want_read(conn)
            return 0
        finally:
            rx.signal()


cdef class TxFastPath(QueueFastPath):
    """The tx queue's fast path over `device` (a `VsockBackend`); see the module doc.
    `packets` counts what it served."""

    cdef object device
    cdef dict conns
    cdef set touched
    cdef object rest
    cdef RxRing rx
    cdef uint64_t cid
    cdef readonly uint64_t packets
    cdef ChainBatch _batch
    cdef uint16_t _cap
    cdef vring_used_elem* _elems
    cdef uint16_t _elems_cap

    def __cinit__(self):
        self._elems = NULL

    def __init__(self, device, RxRing rx not None):
        self.device = device
        self.conns = device.conns
        self.touched = device.tx_interpreter.touched
        self.rest = device.tx_interpreter._rest_of_data
        self.rx = rx
        self.cid = device.cid
        self.packets = 0
        self._batch = None
        self._cap = 0
        self._elems_cap = 0

    def __dealloc__(self):
        free(self._elems)

    cdef int serve(self, object vring, Virtqueue q, InflightLog log) except -1:
        cdef int count
        cdef uint16_t n, i, taken
        cdef ChainBatch batch
        cdef bint stopped
        if log is not None or q.desc == NULL or q._broken:
            return 1
        while True:
            count = avail_count(q)
            if count < 0:
                return 1  # broken by the guest: the Python path reports it
            if count == 0:
                return 0
            n = <uint16_t>count
            batch = self._batch = reuse_batch(self._batch, n, &self._cap)
            batch.pins = q.pins
            if walk_avail(q, batch, n) < 0:
                raise MemoryError()
            self._reserve_elems(n)
            taken = 0
            stopped = False
            try:
                for i in range(n):
                    self._elems[taken].id = batch.chains[i].head
                    self._elems[taken].len = 0
                    try:
                        if not self._packet(batch, i):
                            stopped = True
                            break
                    except BaseException:
                        # What it sent stays sent: the chain is returned, never
                        # forwarded twice.
                        taken += 1
                        raise
                    taken += 1
            finally:
                q.next_avail = <uint16_t>(q.next_avail + taken)
                self.packets += taken
                self._after_batch(vring, q, taken)
            if stopped:
                return 1

    cdef int _reserve_elems(self, uint16_t n) except -1:
        cdef vring_used_elem* grown
        if n <= self._elems_cap:
            return 0
        grown = <vring_used_elem*>realloc(self._elems, n * sizeof(vring_used_elem))
        if grown == NULL:
            raise MemoryError()
        self._elems = grown
        self._elems_cap = n
        return 0

    cdef bint _packet(self, ChainBatch batch, int i) except -1:
        """Serve chain i if it is a packet this path finishes; False leaves it (and
        the rest) to the Python path."""
        cdef ChainInfo* info = &batch.chains[i]
        cdef vsock_hdr hdr
        cdef uint16_t op
        cdef uint32_t length
        cdef ConnectionState conn
        cdef object found
        cdef ssize_t result
        cdef int fd
        cdef iovec iov[_MAX_IOV]
        cdef size_t niov
        if info.error or chain_read(batch, info, 0, <uint8_t*>&hdr, _HEADER_SIZE) != _HEADER_SIZE:
            return False
        op = le16toh(hdr.op)
        length = le32toh(hdr.len)
        if (
            le64toh(hdr.src_cid) != self.cid
            or le64toh(hdr.dst_cid) != _CID_HOST
            or le16toh(hdr.type) != _TYPE_STREAM
            or length > info.read_len - _HEADER_SIZE
        ):
            return False
        if op == _OP_RW:
            if length == 0:
                return False
        elif op != _OP_CREDIT_UPDATE:
            return False
        found = self.conns.get((le32toh(hdr.dst_port), le32toh(hdr.src_port)))
        if not isinstance(found, ConnectionState):
            return False
        conn = <ConnectionState>found
        if conn.seqpacket or (op == _OP_RW and not conn._takes_data_now()):
            return False
        conn.credit.peer_update(le32toh(hdr.buf_alloc), le32toh(hdr.fwd_cnt))
        self.touched.add(conn)
        if op != _OP_RW:
            return True
        fd = conn.fd
        with nogil:
            niov = _iovecs(batch.segs, info.first_seg, info.n_read, _HEADER_SIZE, length, iov)
            result = _transfer(fd, iov, niov, True)
        if result > 0:
            conn.credit.forwarded(<uint32_t>result)
        if result != <ssize_t>length:
            self.rest(conn, batch[i], result)
        return True

    cdef int _after_batch(self, object vring, Virtqueue q, uint16_t taken) except -1:
        """What `TxInterpreter.process` does after a batch: credit updates due, reading
        resumed where the guest's credit grew, the buffers back, rx interrupt first."""
        cdef ConnectionState conn
        cdef RxRing rx = self.rx
        cdef object filler = rx.filler
        for found in self.touched:
            conn = <ConnectionState>found
            if (
                conn._state_code == _ESTABLISHED
                and self.conns.get(conn.key) is conn
                and conn.credit.update_due(conn.held_bytes + len(conn.message))
            ):
                rx.send_control(conn, _OP_CREDIT_UPDATE)
            if not conn.ready and not conn.watching_read and conn._may_read():
                filler.want_read(conn)
        self.touched.clear()
        if rx.python_waits():
            filler.fill(notify=False)
            rx.dirty = True  # what it used is signalled below
        if taken:
            complete_batch(q, self._elems, taken, None)
        rx.signal()
        if taken and q.notify_due():
            signal_fd(vring._call_fd)
        return 0


cdef class HostReader:
    """A stream connection's readable callback (`Worker.add_reader`): its host data
    read straight into rx buffers, within the guest's credit, while nothing else waits
    for them. Anything else (other packets or connections waiting, no credit, no rx
    buffer, end of file) goes to `slow`, the Python `RxFiller`'s handler, which
    knows what to do and logs it."""

    cdef ConnectionState conn
    cdef RxRing rx
    cdef object slow

    def __init__(self, ConnectionState conn not None, RxRing rx not None, slow):
        self.conn = conn
        self.rx = rx
        self.slow = slow

    def __call__(self):
        cdef ConnectionState conn = self.conn
        cdef RxRing rx = self.rx
        cdef Virtqueue q
        cdef int r = _PYTHON
        if not conn.ready and not rx.python_waits():
            q = rx.usable()
            if q is not None:
                r = rx.read_host(conn, q)
                while r == _MORE:
                    r = rx.read_host(conn, q)
        if r == _PYTHON:
            self.slow()
        rx.signal()


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
