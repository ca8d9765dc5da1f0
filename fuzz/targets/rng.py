"""vhost-device-rng's request path: fuzzed request chains (sizes, readable or outside
memory buffers), rate-limit settings and clock steps, and a source file that may run out.

Invariants:
- nothing but VhostUserError escapes `handle_queue` or the worker's timers;
- a completed request's length is at most its writable size, and the bytes served,
  in completion order, are exactly the source file's bytes in order (nothing replayed,
  nothing skipped, nothing written outside the chain);
- the device never serves more than the bucket allows in a period;
- afterwards, in a fresh period and with entropy left, a good request is served whole.
"""

from __future__ import annotations

import os
import random
import tempfile

import atheris
from harness import Rig, check

from vhost_device_rng.device import RngBackend
from vhost_device_rng.ratelimit import TokenBucket
from vhost_device_rng.source import EntropySource

QUEUE = 64
_dir = tempfile.mkdtemp(prefix="fuzz-rng-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
SOURCE = os.path.join(_dir, "entropy")
ENTROPY = random.Random(19).randbytes(1 << 16)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    available = fdp.PickValueInList([len(ENTROPY), 0, 1, 100, 4096])
    with open(SOURCE, "wb") as f:
        f.write(ENTROPY[:available])
    clock = Clock()
    period = fdp.PickValueInList([1.0, 0.5, 10.0])
    capacity = fdp.PickValueInList([1 << 30, 0, 1, 17, 1000, 4096])
    bucket = TokenBucket(capacity, period, clock)
    source = EntropySource(SOURCE)
    backend = RngBackend(source, bucket)
    rig = Rig([QUEUE])
    backend.attach([rig.worker], rig.vrings)
    (vring,) = rig.vrings
    posted: dict[int, int] = {}  # head -> writable size
    served = bytearray()
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 6)):
            for _ in range(fdp.ConsumeIntInRange(0, 8)):
                _post(fdp, rig, posted)
            rig.publish(0)
            granted_before = backend.bytes_served
            window_tokens = bucket._tokens if bucket._window_end is not None else capacity
            backend.handle_queue(vring)
            rig.worker.step(timers=fdp.ConsumeIntInRange(0, 2))
            check(
                backend.bytes_served - granted_before <= max(window_tokens, capacity),
                "served more than the bucket holds",
            )
            _reap(rig, posted, served)
            clock.now += fdp.PickValueInList([0.0, period / 2, period, 3 * period])
        check(
            bytes(served) == ENTROPY[: len(served)], "served bytes are not the source's, in order"
        )
        check(len(served) <= available, "served more than the source had")
        # A good request: with entropy left, it is served within the periods the
        # bucket needs for what was posted before it.
        if len(served) < available and capacity >= 1000 and rig.queues[0].driver.free_descriptors:
            rig.reset_scratch()
            head = rig.post(0, [], [16])
            if head is not None:
                posted[head] = 16
                rig.publish(0)
                for _ in range(60):
                    clock.now += period
                    rig.worker.step(timers=1)
                    backend.handle_queue(vring)
                    _reap(rig, posted, served)
                    if head not in posted or len(served) >= available:
                        break
                check(head not in posted or len(served) >= available, "good request not served")
        check(
            bytes(served) == ENTROPY[: len(served)], "served bytes are not the source's, in order"
        )
    finally:
        backend.close()
        source.close()
        rig.close()


def _post(fdp: atheris.FuzzedDataProvider, rig: Rig, posted: dict[int, int]) -> None:
    kind = fdp.ConsumeIntInRange(0, 5)
    sizes = [fdp.ConsumeIntInRange(1, 300) for _ in range(fdp.ConsumeIntInRange(1, 3))]
    if kind == 5:  # a buffer outside guest memory: the chain is completed empty
        head = rig.post_raw(0, [(0xFFFF_0000_0000, 16, True)])
        if head is not None:
            posted[head] = 0
        return
    head = rig.post(0, [b"x" * 8] if kind == 4 else [], sizes)
    if head is not None:
        posted[head] = sum(sizes)


def _reap(rig: Rig, posted: dict[int, int], served: bytearray) -> None:
    for head, length in rig.used(0):
        size = posted.pop(head)
        check(length <= size, f"request {head}: {length} bytes used of {size} writable")
        served += rig.written(0, head, length)
