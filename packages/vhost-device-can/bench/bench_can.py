"""Benchmark of vhost-device-can through the core's Python frontend (run by hand).

Starts the real daemon as a process on python-can's virtual bus and plays the
virtio-can driver: frames/s guest → bus (32 TX requests in flight, nobody else on the
bus), then guest → guest through the bus (a second socket of the daemon on the same
virtual bus sends, the first keeps 32 rx buffers posted: frames/s received), then
the daemon's CPU use while a started guest idles, and its peak RSS. vcan is not
measured here: this host's kernel has no modules (the hostkernel tests reach vcan
inside a guest). `--daemon LABEL='CMD {sock}'` adds another implementation (with
`{count}` sockets and `{devices}`, space-separated, if it takes them), measured in the
same run, alternating, each row with its ratio to ours.

    python3 xtask bench can          # or: .venv/bin/python bench/bench_can.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from vhost_device_can.protocol import (
    CTRLQ,
    QUEUE_SIZE,
    RXQ,
    SET_CTRL_MODE_START,
    TXQ,
    Frame,
    encode_tx,
)
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    DaemonCommand,
    Ratios,
    Started,
    add_daemon_arg,
    chosen_daemons,
    each_daemon,
    idle_report,
    python_daemon,
    reap_used,
    rounds,
)

DEPTH = QUEUE_SIZE // 2  # a TX request takes two descriptors of the 64
RX_SIZE = 16 + 64


OURS_COMMAND = python_daemon("vhost_device_can.main", "-s {sock} -c {count} -d {devices}")


def each(
    daemons: list[DaemonCommand], tmp: Path, devices: list[str], stack: ExitStack
) -> list[Started]:
    """Every daemon at once, each with `devices` (`{devices}`, one per socket)."""
    return each_daemon(
        daemons,
        tmp / f"can{len(devices)}.sock",
        stack,
        count=len(devices),
        fields={"count": len(devices), "devices": " ".join(devices)},
        extra=["--log-level", "warning"],
    )


def started(frontend: Frontend) -> list[FrontendQueue]:
    queues = frontend.start_device(3, QUEUE_SIZE)
    assert frontend.ram is not None
    ram = frontend.ram
    src, result = ram.alloc(2), ram.alloc(1)
    ram.memory.write(src, SET_CTRL_MODE_START.to_bytes(2, "little"))
    queues[CTRLQ].driver.add([(src, 2, False), (result, 1, True)])
    queues[CTRLQ].publish()
    reap_used(queues[CTRLQ], 1)
    return queues


def tx_slots(frontend: Frontend, frame: Frame) -> list[tuple[int, int, int]]:
    assert frontend.ram is not None
    request = encode_tx(frame)
    slots = []
    for _ in range(DEPTH):
        src = frontend.ram.alloc(len(request))
        frontend.ram.memory.write(src, request)
        slots.append((src, len(request), frontend.ram.alloc(1)))
    return slots


def send_round(queue: FrontendQueue, slots: list[tuple[int, int, int]]) -> None:
    for src, length, result in slots:
        queue.driver.add([(src, length, False), (result, 1, True)])
    queue.publish()


def guest_to_bus(sockets: list[str], seconds: float, frame: Frame) -> float:
    with Frontend.connect(sockets[0]) as frontend:
        txq = started(frontend)[TXQ]
        slots = tx_slots(frontend, frame)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            send_round(txq, slots)
            reap_used(txq, DEPTH)
            count += DEPTH
        return count / (time.perf_counter() - t0)


def guest_to_guest(sockets: list[str], seconds: float, frame: Frame) -> float:
    with Frontend.connect(sockets[0]) as receiver, Frontend.connect(sockets[1]) as sender:
        rxq = started(receiver)[RXQ]
        txq = started(sender)[TXQ]
        slots = tx_slots(sender, frame)
        assert receiver.ram is not None
        buffers = [receiver.ram.alloc(RX_SIZE) for _ in range(DEPTH)]
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for gpa in buffers:
                rxq.driver.add([(gpa, RX_SIZE, True)])
            rxq.publish()
            send_round(txq, slots)
            reap_used(txq, DEPTH)
            reap_used(rxq, DEPTH)
            count += DEPTH
        return count / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    add_daemon_arg(parser)
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, OURS_COMMAND)
    frames = {"classic 8 B": Frame(0x123, bytes(8)), "FD 64 B": Frame(0x123, bytes(64), fd=True)}
    ratio = Ratios()
    with tempfile.TemporaryDirectory() as tmp:
        print("| daemon | path | frame | frames/s | × ours |")
        print("|---|---|---|---|---|")
        with ExitStack() as stack:
            running = each(daemons, Path(tmp), ["virtual:bench"], stack)
            for name, daemon in rounds(frames, running):
                rate = guest_to_bus(daemon.sockets, args.seconds, frames[name])
                times = ratio(("bus", name), daemon.label, rate)
                print(f"| {daemon.label} | guest → virtual bus | {name} | {rate:,.0f} | {times} |")
        with ExitStack() as stack:
            running = each(daemons, Path(tmp), ["virtual:bench", "virtual:bench"], stack)
            for name, daemon in rounds(frames, running):
                rate = guest_to_guest(daemon.sockets, args.seconds, frames[name])
                times = ratio(("guest", name), daemon.label, rate)
                print(
                    f"| {daemon.label} | guest → virtual bus → guest | {name} "
                    f"| {rate:,.0f} | {times} |"
                )
            print()
            for daemon in running:
                with Frontend.connect(daemon.socket) as frontend:
                    started(frontend)  # started, its bus fd watched, nothing on the bus
                    idle = idle_report(daemon.process.pid)
                print(f"{daemon.label}: {idle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
