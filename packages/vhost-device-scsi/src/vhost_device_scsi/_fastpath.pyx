# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The request queues' common case in C, on the core's fast-path hook.

Why C: a 4 KiB read cost 15-25 µs of the daemon's CPU through the Python path (chain
objects, header decode, dataclasses, memoryviews) for 1-2 µs of preadv from tmpfs.

At a kick, `RequestFastPath.serve` walks the avail ring in order and takes the longest
prefix of plainly well-formed commands it can finish at once: READ or WRITE (10), (12)
or (16) of a present LUN, within its capacity, at most `INLINE_MAX` bytes, the buffers
in the spec's layout (request header, data-out, response, data-in) with room for the
transfer and no data the other way, no NACA; writes only without FUA, to a writable
LUN whose image is in memory (tmpfs, memfd); reads from an image on disk only if the
page cache has the data (preadv2 RWF_NOWAIT). Their I/O runs straight between the
image and guest memory with the GIL released (one release per batch), the responses
are written, the batch goes to the used ring with one index update (keeping the
inflight records, `complete_batch`) and the guest is interrupted once.

The first chain it does not take (any other opcode, any error, sense data, a hostile
layout, a short read, I/O that would wait) and everything after it stay on the ring
for the Python path (`device.ScsiBackend._command`), which answers them in order with
its checks and logging: the C path answers only what the Python path would answer
GOOD with no sense, byte for byte the same (the tests run the same requests both ways).
"""

from libc.errno cimport EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset
from posix.uio cimport iovec
from posix.unistd cimport write

from vhost_user_core.fastpath cimport (
    InflightLog, QueueFastPath, avail_count, complete_batch, walk_avail,
)
from vhost_user_core.memory cimport Segment
from vhost_user_core.ring cimport vring_used_elem
from vhost_user_core.virtqueue cimport ChainBatch, ChainInfo, Virtqueue, chain_read

cdef extern from "<sys/uio.h>" nogil:
    ssize_t preadv(int fd, const iovec* iov, int iovcnt, long offset)
    ssize_t pwritev(int fd, const iovec* iov, int iovcnt, long offset)
    ssize_t preadv2(int fd, const iovec* iov, int iovcnt, long offset, int flags)
    enum:
        RWF_NOWAIT

cdef enum:
    REQ_HEAD_SIZE = 19   # lun[8], tag u64, task_attr, prio, crn
    RESP_HEAD_SIZE = 12  # sense_len u32, resid u32, status_qualifier u16, status, response
    CDB_PARSED = 16      # the longest CDB taken here; the config's cdb_size is at least 16
    MAX_IOV = 1024       # Linux's IOV_MAX: a longer transfer is the Python path's


cdef struct Lun:
    int fd             # -1: every command to it is the Python path's
    uint32_t block_size
    bint read_only
    bint in_memory


cdef struct Request:
    uint16_t head
    bint write
    bint nowait        # a read from an image on disk: only what the page cache holds
    int fd
    uint64_t offset
    uint64_t length
    uint32_t iov_first
    uint32_t iov_count
    uint32_t resid
    uint32_t used_len


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t be64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef int run_io(Request* r, iovec* iov) noexcept nogil:
    """The request's whole transfer: 0 if done, -1 to leave it to the Python path
    (an error, end of file, a short transfer from the page cache)."""
    cdef ssize_t n
    cdef uint64_t done = 0
    cdef uint32_t first = 0, count = r.iov_count
    if r.nowait:
        n = preadv2(r.fd, iov, count, r.offset, RWF_NOWAIT)
        return 0 if n >= 0 and <uint64_t>n == r.length else -1
    while done < r.length:
        if r.write:
            n = pwritev(r.fd, iov + first, count - first, r.offset + done)
        else:
            n = preadv(r.fd, iov + first, count - first, r.offset + done)
        if n < 0 and errno == EINTR:
            continue
        if n <= 0:
            return -1
        done += n
        while first < count and <uint64_t>n >= iov[first].iov_len:
            n -= iov[first].iov_len
            first += 1
        if n:
            iov[first].iov_base = <uint8_t*>iov[first].iov_base + n
            iov[first].iov_len -= n
    return 0


cdef void put_response(ChainBatch batch, ChainInfo* info, uint32_t resid,
                       uint32_t resp_size) noexcept nogil:
    """A GOOD response with no sense (`CmdResponse(OK, GOOD, b"", resid).encode`)
    over the first resp_size writable bytes."""
    cdef uint8_t head[RESP_HEAD_SIZE]
    cdef uint32_t s = info.first_seg + info.n_read
    cdef uint32_t end = s + info.n_write
    cdef uint64_t at = 0, take, lo
    cdef Segment* seg
    memset(head, 0, RESP_HEAD_SIZE)
    head[4] = resid & 0xFF
    head[5] = (resid >> 8) & 0xFF
    head[6] = (resid >> 16) & 0xFF
    head[7] = resid >> 24
    while at < resp_size and s < end:
        seg = &batch.segs[s]
        take = seg.len if seg.len < resp_size - at else resp_size - at
        memset(seg.ptr, 0, take)
        if at < RESP_HEAD_SIZE:
            lo = RESP_HEAD_SIZE - at if RESP_HEAD_SIZE - at < take else take
            memcpy(seg.ptr, head + at, lo)
        at += take
        s += 1


cdef class RequestFastPath(QueueFastPath):
    """One request queue's fast path over `backend` (a `ScsiBackend`): its LUNs'
    images, read once, and its `cdb_size` / `sense_size`, read at every kick (the
    driver may change them). `served` counts the commands answered here."""

    cdef object backend
    cdef list _disks
    cdef Lun* _luns
    cdef int _nluns
    cdef uint64_t _inline_max
    cdef readonly uint64_t served
    cdef ChainBatch _batch
    cdef uint16_t _cap
    cdef Request* _reqs
    cdef vring_used_elem* _elems
    cdef iovec* _iov
    cdef uint32_t _iov_cap

    def __cinit__(self):
        self._luns = NULL
        self._reqs = NULL
        self._elems = NULL
        self._iov = NULL

    def __init__(self, backend, luns, uint64_t inline_max):
        """`luns`: per LUN, (fd or -1, block size, read-only, in memory)."""
        cdef int i
        self.keeps_inflight = True
        self.backend = backend
        self._disks = list(backend.target.disks)
        self._nluns = min(len(luns), len(self._disks))
        self._luns = <Lun*>malloc(max(self._nluns, 1) * sizeof(Lun))
        if self._luns == NULL:
            raise MemoryError()
        for i, (fd, block_size, read_only, in_memory) in enumerate(luns[:self._nluns]):
            self._luns[i].fd = fd
            self._luns[i].block_size = block_size
            self._luns[i].read_only = read_only
            self._luns[i].in_memory = in_memory
        self._inline_max = inline_max
        self.served = 0
        self._batch = None
        self._cap = 0
        self._iov_cap = 0

    def __dealloc__(self):
        free(self._luns)
        free(self._reqs)
        free(self._elems)
        free(self._iov)

    cdef ChainBatch _fresh_batch(self, uint16_t n):
        """The batch (and per-chain arrays) reused for every wake-up."""
        cdef ChainBatch batch = self._batch
        if batch is None or n > self._cap:
            batch = ChainBatch.__new__(ChainBatch)
            batch.chains = <ChainInfo*>malloc(n * sizeof(ChainInfo))
            free(self._reqs)
            free(self._elems)
            self._reqs = <Request*>malloc(n * sizeof(Request))
            self._elems = <vring_used_elem*>malloc(n * sizeof(vring_used_elem))
            if batch.chains == NULL or self._reqs == NULL or self._elems == NULL:
                self._batch = None
                self._cap = 0
                raise MemoryError()
            self._batch = batch
            self._cap = n
        batch.count = 0
        batch.seg_count = 0
        return batch

    cdef int _reserve_iov(self, uint32_t n) except -1:
        cdef iovec* grown
        if n <= self._iov_cap:
            return 0
        grown = <iovec*>realloc(self._iov, n * sizeof(iovec))
        if grown == NULL:
            raise MemoryError()
        self._iov = grown
        self._iov_cap = n
        return 0

    cdef bint _take(self, ChainBatch batch, int i, Request* r, uint32_t req_size,
                    uint32_t resp_size, uint32_t* iov_used) except -1:
        """Whether chain i is a command this path answers; if so, `r` says how."""
        cdef ChainInfo* info = &batch.chains[i]
        cdef uint8_t hdr[REQ_HEAD_SIZE + CDB_PARSED]
        cdef const uint8_t* cdb = hdr + REQ_HEAD_SIZE
        cdef int lun, need
        cdef uint8_t op
        cdef uint64_t lba, blocks, capacity, data_in, data_out, skip, left, take
        cdef uint32_t s, end
        cdef Segment* seg
        cdef Lun* l
        if info.error or info.write_len < resp_size or info.read_len < req_size:
            return False
        if chain_read(batch, info, 0, hdr, sizeof(hdr)) != sizeof(hdr):
            return False
        # The LUN field (virtio.decode_lun): target 0, flat or peripheral addressing.
        if hdr[0] != 1 or hdr[1] != 0 or hdr[4] or hdr[5] or hdr[6] or hdr[7]:
            return False
        if hdr[2] >> 6 == 1:
            lun = ((hdr[2] & 0x3F) << 8) | hdr[3]
        elif hdr[2] == 0:
            lun = hdr[3]
        else:
            return False
        if lun >= self._nluns or self._luns[lun].fd < 0:
            return False
        l = &self._luns[lun]
        # The CDB (codec.decode's READ/WRITE cases; Disk._rw's checks).
        op = cdb[0]
        if op == 0x28 or op == 0x2A:
            need, lba, blocks = 10, be32(cdb + 2), (cdb[7] << 8) | cdb[8]
        elif op == 0xA8 or op == 0xAA:
            need, lba, blocks = 12, be32(cdb + 2), be32(cdb + 6)
        elif op == 0x88 or op == 0x8A:
            need, lba, blocks = 16, be64(cdb + 2), be32(cdb + 10)
        else:
            return False
        r.write = (op & 0x02) != 0
        if cdb[need - 1] & 0x04 or blocks == 0:
            return False  # NACA: refused; no blocks: nothing to move
        if r.write and (cdb[1] & 0x08 or l.read_only or not l.in_memory):
            return False  # FUA syncs, a read-only LUN refuses, a disk's write may wait
        capacity = self._disks[lun].capacity
        if lba > capacity or blocks > capacity - lba:
            return False
        r.length = blocks * l.block_size
        if r.length > self._inline_max:
            return False  # the pool overlaps big transfers
        data_in = info.write_len - resp_size
        data_out = info.read_len - req_size
        if data_in > 0xFFFFFFFF or data_out > 0xFFFFFFFF:
            return False  # a residual the response cannot carry
        if r.write:
            if data_in or data_out < r.length:
                return False
            r.resid = <uint32_t>(data_out - r.length)
            r.used_len = resp_size
            s, end, skip = info.first_seg, info.first_seg + info.n_read, req_size
        else:
            if data_out or data_in < r.length:
                return False
            r.resid = <uint32_t>(data_in - r.length)
            r.used_len = <uint32_t>(resp_size + r.length)
            s, end = info.first_seg + info.n_read, info.first_seg + info.n_read + info.n_write
            skip = resp_size
        # The transfer's iovecs: the data buffers past the header (or response).
        r.iov_first = iov_used[0]
        r.iov_count = 0
        left = r.length
        while left and s < end:
            seg = &batch.segs[s]
            s += 1
            if skip >= seg.len:
                skip -= seg.len
                continue
            if r.iov_count == MAX_IOV:
                return False
            take = seg.len - skip
            if take > left:
                take = left
            self._iov[r.iov_first + r.iov_count].iov_base = seg.ptr + skip
            self._iov[r.iov_first + r.iov_count].iov_len = take
            r.iov_count += 1
            left -= take
            skip = 0
        iov_used[0] += r.iov_count
        r.head = info.head
        r.fd = l.fd
        r.offset = lba * l.block_size
        r.nowait = not r.write and not l.in_memory
        return True

    cdef int serve(self, object vring, Virtqueue q, InflightLog log) except -1:
        cdef uint16_t n, i, taken, done
        cdef int count
        cdef ChainBatch batch
        cdef uint32_t req_size, resp_size, iov_used
        cdef uint64_t one = 1
        cdef Request* r
        cdef object call_fd
        if q.desc == NULL or q._broken:
            return 1
        req_size = REQ_HEAD_SIZE + <uint32_t>self.backend.cdb_size
        resp_size = RESP_HEAD_SIZE + <uint32_t>self.backend.sense_size
        if log is not None:
            log.resume()
        try:
            while True:
                count = avail_count(q)
                if count < 0:
                    return 1  # broken by the guest: the Python path reports it
                if count == 0:
                    return 0
                n = <uint16_t>count
                batch = self._fresh_batch(n)
                if walk_avail(q, batch, n) < 0:
                    raise MemoryError()
                self._reserve_iov(batch.seg_count)
                iov_used = 0
                taken = 0
                while taken < n and self._take(
                    batch, taken, &self._reqs[taken], req_size, resp_size, &iov_used
                ):
                    taken += 1
                if taken == 0:
                    return 1
                if log is not None:
                    for i in range(taken):
                        log.popped(self._reqs[i].head)
                done = 0
                with nogil:
                    while done < taken:
                        r = &self._reqs[done]
                        if run_io(r, self._iov + r.iov_first) < 0:
                            break
                        done += 1
                if log is not None:
                    for i in range(done, taken):
                        log.unpopped(self._reqs[i].head)
                for i in range(done):
                    r = &self._reqs[i]
                    put_response(batch, &batch.chains[i], r.resid, resp_size)
                    self._elems[i].id = r.head
                    self._elems[i].len = r.used_len
                if done:
                    if complete_batch(q, self._elems, done, log) < 0:
                        if log is not None:
                            for i in range(done):
                                log.unpopped(self._reqs[i].head)
                        return 1
                    q.next_avail = <uint16_t>(q.next_avail + done)
                    self.served += done
                    if q.notify_due():
                        call_fd = vring.call_fd
                        if call_fd is not None:
                            write(<int>call_fd, &one, 8)
                if done < n:
                    return 1  # the rest, from the first chain not taken, is Python's
        finally:
            if log is not None:
                log.flush()
