"""Issue 25's setup by hand, to find where a sibling SHUTDOWN loses against TCP.

Two real guests in one daemon (CID 3 and 4, one group); guest 3 shuts down reading,
then signals guest 4 over TCP through QEMU's user networking, through a host relay
that timestamps each byte (CLOCK_MONOTONIC); guest 4's send must fail with EPIPE.
Not a test (`test_guest_vsock.py` has the asserting ones): it prints the misses, and
with `--trace DIR` writes both guests' ftrace (vsock rx, IRQs, workqueues, the
scheduler, the program's own markers), the relay's timestamps and, for our daemon,
when each SHUTDOWN reached the daemon and guest 4's rx ring and whether the guest
was interrupted. Run with the venv's python from the checkout:

    .venv/bin/python packages/vhost-device-vsock/tests/sibling_race.py [--rounds 20]
        [--daemon 'CMD'] [--direct] [--trace DIR]

`--daemon` runs another implementation (its `--vm` flags are appended in upstream's
syntax); `--direct` sends guest 3's TCP straight to guest 4's port forward instead of
through the relay.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guest_vsock import GUEST_PATH, guest_files, net_files, net_setup, parse_result

from vhost_user_core.testing.guest_image import build_image
from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.qemu import Guest, GuestResult, vhost_user_device

DATA_PORT, SIGNAL_PORT = 7000, 7001
EVENTS = (
    "vsock/virtio_transport_recv_pkt vsock/virtio_transport_alloc_pkt "
    "irq/irq_handler_entry workqueue/workqueue_execute_start sched/sched_wakeup "
    "sched/sched_switch net/netif_receive_skb net/net_dev_xmit"
)
TRACE_ON = f"""mount -t tracefs nodev /sys/kernel/tracing
T=/sys/kernel/tracing
echo 16384 > $T/buffer_size_kb
for e in {EVENTS}; do echo 1 > $T/events/$e/enable; done
export VSOCK_TRACE=1
"""
TRACE_DUMP = "cat /sys/kernel/tracing/trace > $OUTPORT\n"


def stamped_daemon() -> None:
    """Our daemon, with each sibling SHUTDOWN's times written to $SIBLING_RACE_STAMPS:
    handed to the target VM (`deliver`), taken into its rx ring, and the interrupt."""
    from vhost_device_vsock import inbox, vm
    from vhost_device_vsock.main import main
    from vhost_device_vsock.packet import Op
    from vhost_user_core import vring

    out = open(os.environ["SIBLING_RACE_STAMPS"], "a", buffering=1)  # noqa: SIM115
    deliver, take = vm.VirtualMachine.deliver, inbox.SiblingInbox.get
    taken: list[int] = []

    def stamped_deliver(self: vm.VirtualMachine, header, payload):  # type: ignore[no-untyped-def]
        if header.op == Op.SHUTDOWN:
            out.write(f"{time.monotonic():.6f} deliver {header.src_port} flags={header.flags}\n")
        return deliver(self, header, payload)

    def stamped_take(self: inbox.SiblingInbox, room: int):  # type: ignore[no-untyped-def]
        packet = take(self, room)
        if packet is not None and packet[0].op == Op.SHUTDOWN:
            out.write(f"{time.monotonic():.6f} rxring {packet[0].src_port}\n")
            taken.append(1)
        return packet

    def stamped_signal(self: vring.Vring) -> None:
        due = self._call_fd is not None and self._queue.needs_notification()
        if due:
            assert self._call_fd is not None
            os.eventfd_write(self._call_fd, 1)
        if taken:
            out.write(f"{time.monotonic():.6f} interrupt due={due}\n")
            taken.clear()

    vm.VirtualMachine.deliver = stamped_deliver  # type: ignore[method-assign]
    inbox.SiblingInbox.get = stamped_take  # type: ignore[method-assign]
    vring.Vring.signal_used = stamped_signal  # type: ignore[method-assign]
    sys.exit(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Relay:
    """Guest 3's TCP connection, passed byte by byte to guest 4's port forward."""

    def __init__(self, forward: int) -> None:
        self.forward = forward
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stamps: list[tuple[float, str]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self.listener.settimeout(300)
        three, _ = self.listener.accept()
        while True:  # QEMU takes the connection before guest 4 listens: wait for 'L'
            four = socket.create_connection(("127.0.0.1", self.forward))
            four.settimeout(2)
            try:
                if four.recv(1) == b"L":
                    break
            except TimeoutError:
                pass
            four.close()
            time.sleep(0.2)
        four.settimeout(None)
        for sock in (three, four):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        three.sendall(b"L")
        threading.Thread(target=self._copy, args=(three, four, "3->4"), daemon=True).start()
        self._copy(four, three, "4->3")

    def _copy(self, source: socket.socket, sink: socket.socket, name: str) -> None:
        while byte := source.recv(1):
            self.stamps.append((time.monotonic(), f"relay {name} {byte.decode()}"))
            sink.sendall(byte)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--daemon", help="another daemon's command (default: ours)")
    parser.add_argument("--direct", action="store_true")
    parser.add_argument("--trace", type=Path, help="directory for traces and timestamps")
    args = parser.parse_args()
    image = build_image()
    net = net_files(image)
    files = guest_files() | net
    work = Path(tempfile.mkdtemp(prefix="sibling-race-"))
    trace_dir = args.trace or work
    trace_dir.mkdir(parents=True, exist_ok=True)
    forward = free_port()
    relay = None if args.direct else Relay(forward)
    signal = f"tcp:10.0.2.2:{forward if relay is None else relay.port}"
    on, dump = (TRACE_ON, TRACE_DUMP) if args.trace else ("", "")
    scripts = {
        3: net_setup(net)
        + on
        + f"{GUEST_PATH} shutrd 4 {DATA_PORT} {signal} {args.rounds}\n"
        + dump,
        4: net_setup(net)
        + on
        + f"{GUEST_PATH} shutpeer {DATA_PORT} tcp-listen:{SIGNAL_PORT} {args.rounds}\n"
        + dump,
    }
    netdev = {3: "user,id=net0", 4: f"user,id=net0,hostfwd=tcp:127.0.0.1:{forward}-:{SIGNAL_PORT}"}
    sockets = {cid: work / f"vm{cid}.sock" for cid in (3, 4)}
    argv = (
        shlex.split(args.daemon) if args.daemon else [sys.executable, __file__, "--stamped-daemon"]
    )
    for cid in (3, 4):
        argv += [
            "--vm",
            f"guest-cid={cid},socket={sockets[cid]},uds-path={work}/vm{cid}.vsock,groups=g1",
        ]
    stamps = trace_dir / "daemon-stamps.txt"
    env = dict(os.environ, SIBLING_RACE_STAMPS=str(stamps))
    results: dict[int, GuestResult | BaseException] = {}
    guest = Guest(image, work)

    def boot(cid: int) -> None:
        devices = vhost_user_device(sockets[cid], "vhost-user-vsock-pci")
        devices += ["-netdev", netdev[cid], "-device", "virtio-net-pci,netdev=net0"]
        try:
            results[cid] = guest.run(scripts[cid], devices=devices, extra_files=files, timeout=400)
        except BaseException as exc:
            results[cid] = exc

    try:
        with daemon_process(argv, log=work / "daemon.log", sockets=list(sockets.values()), env=env):
            other = threading.Thread(target=boot, args=(4,))
            other.start()
            boot(3)
            other.join()
    except AssertionError as exc:  # another daemon may not exit 0 on SIGTERM
        if "on SIGTERM" not in str(exc):
            raise
    for cid, result in sorted(results.items()):
        if isinstance(result, BaseException):
            print(f"guest {cid}: {result}")
            continue
        if args.trace:
            (trace_dir / f"trace{cid}.txt").write_bytes(result.output_bytes)
        kind = "SHUTRD" if cid == 3 else "SHUTPEER"
        line = parse_result(result.console_output, kind)
        print(f"guest {cid}: {kind}", *(f"{k}={v}" for k, v in line.fields.items()))
    if relay is not None and args.trace:
        (trace_dir / "relay-stamps.txt").write_text(
            "".join(f"{t:.6f} {what}\n" for t, what in relay.stamps)
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stamped-daemon"]:
        del sys.argv[1]
        stamped_daemon()
    main()
