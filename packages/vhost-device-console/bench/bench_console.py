"""Benchmark of vhost-device-console's network backend (run by hand).

Starts the daemon (`-b network`), plays the virtio-console multiport driver through the
core's Python frontend and a TCP client, and prints bytes/s guest → client and
client → guest (4 KiB buffers, 64 in flight), then the daemon's CPU use while idle
and its peak RSS. `--daemon LABEL='CMD {sock} {port}'` adds another implementation
(e.g. upstream's `-s {sock} -b network -p {port}`), measured in the same run,
alternating, each row with its ratio to ours.

    .venv/bin/python packages/vhost-device-console/bench/bench_console.py
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from vhost_user_core import VhostUserError
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    Ratios,
    add_daemon_arg,
    chosen_daemons,
    idle_report,
    python_daemon,
    reap_used,
    rounds,
    started,
)

CHUNK, DEPTH = 4096, 64


def handshake(frontend: Frontend, queues: list[FrontendQueue]) -> None:
    assert frontend.ram is not None
    ram = frontend.ram
    _, _, ctrl_rx, ctrl_tx = queues
    for _ in range(8):
        ctrl_rx.driver.add([(ram.alloc(64), 64, True)])
    ctrl_rx.publish()
    for event in (0, 3, 6):  # DEVICE_READY, PORT_READY, PORT_OPEN
        src = ram.alloc(8)
        ram.memory.write(src, struct.pack("<IHH", 0, event, 1))
        ctrl_tx.driver.add([(src, 8, False)])
        ctrl_tx.publish()
        reap_used(ctrl_tx, 1)


def guest_to_client(
    frontend: Frontend, tx: FrontendQueue, sock: socket.socket, seconds: float
) -> float:
    assert frontend.ram is not None
    bufs = [frontend.ram.alloc(CHUNK) for _ in range(DEPTH)]
    received = [0]

    def drain() -> None:
        try:
            while chunk := sock.recv(1 << 16):
                received[0] += len(chunk)
        except OSError:
            pass  # the bench closed the socket

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    sent, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for buf in bufs:
            tx.driver.add([(buf, CHUNK, False)])
        tx.publish()
        reap_used(tx, DEPTH)
        sent += CHUNK * DEPTH
    while received[0] < sent:
        time.sleep(0.01)
    return sent / (time.perf_counter() - t0)


def client_to_guest(
    frontend: Frontend, rx: FrontendQueue, sock: socket.socket, seconds: float
) -> float:
    assert frontend.ram is not None
    bufs = [frontend.ram.alloc(CHUNK) for _ in range(DEPTH)]
    stop = threading.Event()

    def feed() -> None:
        data = bytes(1 << 16)
        try:
            while not stop.is_set():
                sock.sendall(data)
        except OSError:
            pass  # the bench closed the socket

    thread = threading.Thread(target=feed, daemon=True)
    got, t0 = 0, time.perf_counter()
    thread.start()
    while time.perf_counter() - t0 < seconds:
        for buf in bufs:
            rx.driver.add([(buf, CHUNK, True)])
        rx.publish()
        done = 0
        while done < DEPTH:
            used = rx.driver.get_used()
            if not used:
                rx.driver.arm_interrupt()
                used = rx.driver.get_used()
                if not used and not rx.wait_call(5.0):
                    raise TimeoutError("no input in 5 s")
            done += len(used)
            got += sum(length for _, length in used)
    elapsed = time.perf_counter() - t0
    stop.set()
    return got / elapsed


OURS_COMMAND = python_daemon("vhost_device_console.main", "-s {sock} -b network -p {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per direction")
    add_daemon_arg(parser)
    parser.add_argument("--port", type=int, default=23456, help="ours; the next daemon's +1, …")
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, OURS_COMMAND)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        sessions = []
        for n, command in enumerate(daemons):
            port = args.port + n
            daemon = stack.enter_context(
                started(
                    command,
                    Path(tmp) / f"console.{n}.sock",
                    fields={"port": port},
                    extra=["--log-level", "warning"],
                    stdin=subprocess.DEVNULL,
                )
            )
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            queues = frontend.start_device(4, 128)
            handshake(frontend, queues)
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            sessions.append((daemon, frontend, queues, sock))
        time.sleep(0.2)
        ratio = Ratios()
        print("| daemon | direction | MB/s | × ours |")
        print("|---|---|---|---|")
        runs = {
            "guest → TCP client": (guest_to_client, 1),
            "TCP client → guest": (client_to_guest, 0),
        }
        for name, (daemon, frontend, queues, sock) in rounds(runs, sessions):
            bench, index = runs[name]
            try:
                rate: float | None = bench(frontend, queues[index], sock, args.seconds)
                shown = f"{rate / 1e6:.1f}" if rate is not None else ""
            except (VhostUserError, TimeoutError) as exc:  # upstream's, seen
                rate, shown = None, f"failed: {exc}"
            print(f"| {daemon.label} | {name} | {shown} | {ratio(name, daemon.label, rate)} |")
        for _, _, _, sock in sessions:
            sock.close()
        time.sleep(0.5)
        print()
        for daemon, *_ in sessions:
            print(f"{daemon.label}: {idle_report(daemon.process.pid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
