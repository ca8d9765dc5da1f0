"""Crash-reconnect in a real guest: the daemon is killed with SIGKILL while the guest
runs a write-and-verify loop, a new one starts on the same socket, QEMU reconnects
(`reconnect-ms` on the chardev) and hands it the inflight region it kept
(INFLIGHT_SHMFD): the requests that were in flight are resubmitted, and the guest's
loop ends with no I/O error and every block verified."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vhost_user_core.testing.guest_image import GuestImage
from vhost_user_core.testing.harness import wait_for_socket
from vhost_user_core.testing.hostroot import HostRootGuest, ModuleSpec

pytestmark = pytest.mark.guest

SIZE = 16 << 20
BLOCK, SLOTS = 256 * 1024, 32
ROUNDS = 80  # per guest thread
KILL_AT = 20  # rounds the guest must have written before the kill

GUEST_SCRIPT = r"""
exec >"$OUTPORT" 2>&1
"$PYTHON" "$PROGRAM" "$SIZE" "$ROUNDS" || echo "program-failed: $?"
dmesg | grep -i -e "I/O error" -e "reset" -e "abort" | sed 's/^/dmesg: /' | tail -20
"""


def _rounds_written(image: Path) -> int:
    """The newest round number in the image's slots (the guest writes ITER%08d)."""
    best = -1
    with image.open("rb") as f:
        for slot in range(SLOTS):
            f.seek(slot * BLOCK)
            head = f.read(12)
            if head.startswith(b"ITER") and head[4:12].isdigit():
                best = max(best, int(head[4:12]))
    return best


def _wait_stopped(pid: int) -> None:
    """Wait until every thread of `pid` has stopped: kill(SIGSTOP) returns before the
    signal is delivered, and a daemon still running for those microseconds can answer
    the request whose inflight record was just read (then there is nothing left to
    resubmit, and the second daemon rightly logs nothing)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
            except OSError:
                continue  # the thread ended meanwhile
            states.append(stat.rsplit(")", 1)[1].split()[0])
        if all(state in "tT" for state in states):
            return
        time.sleep(0.0005)
    raise AssertionError(f"daemon {pid} did not stop")


def _inflight_requests(pid: int) -> int:
    """Requests the daemon has taken and not returned, from its inflight region (the
    memfd it shares with QEMU), as the spec lays it out: per queue a 16-byte header,
    then 16 bytes per descriptor whose first byte says "inflight"."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "vhost-inflight" not in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
            data = Path(f"/proc/{pid}/fd/{fd}").read_bytes()
        except OSError:
            continue  # closed meanwhile
        step = len(data) // 3  # controlq, eventq, one request queue
        queue = data[2 * step : 3 * step]
        count += sum(queue[16 + 16 * i] == 1 for i in range(128))
    return count


def test_a_killed_daemon_is_replaced_and_the_guest_loses_nothing(
    guest_image: GuestImage, tmp_path: Path
) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(hashlib.shake_256(b"reconnect").digest(SIZE))
    sock = tmp_path / "scsi.sock"
    argv = [sys.executable, "-m", "vhost_device_scsi.main", "-s", str(sock), str(image)]
    argv += ["--log-level", "debug"]  # the logs say what was resubmitted
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    daemons = [subprocess.Popen(argv, stderr=logs[0].open("wb"))]
    wait_for_socket(sock, proc=daemons[0])
    events: list[str] = []
    stop = threading.Event()

    def kill_and_restart() -> None:
        """SIGKILL the daemon in the middle of the loop, start another at once."""
        while not stop.is_set() and _rounds_written(image) < KILL_AT:
            time.sleep(0.05)
        if stop.is_set():
            return
        pid = daemons[0].pid
        for _ in range(3000):  # freeze it until requests are in flight, then kill
            os.kill(pid, signal.SIGSTOP)
            _wait_stopped(pid)
            inflight = _inflight_requests(pid)
            if inflight:
                break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.003)
        os.kill(pid, signal.SIGKILL)
        daemons[0].wait()
        events.append(f"killed at round {_rounds_written(image)}, {inflight} requests in flight")
        daemons.append(subprocess.Popen(argv, stderr=logs[1].open("wb")))

    killer = threading.Thread(target=kill_and_restart, daemon=True)
    killer.start()
    try:
        guest = HostRootGuest(guest_image, workdir=tmp_path)
        result = guest.run(
            ["/bin/sh", "-c", GUEST_SCRIPT],
            cwd=tmp_path,
            env={
                "PYTHON": sys.executable,
                "PROGRAM": str(Path(__file__).parent / "guest_scsi_loop.py"),
                "SIZE": str(SIZE),
                "ROUNDS": str(ROUNDS),
            },
            modules=[ModuleSpec.parse(m) for m in ("virtio_scsi", "sd_mod")],
            devices=[
                "-chardev",
                f"socket,id=scsir,path={sock},reconnect-ms=200",
                "-device",
                "vhost-user-scsi-pci,chardev=scsir,num_queues=1",
            ],
            timeout=600,
        )
    finally:
        stop.set()
        killer.join(5)
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
        codes = [daemon.wait(10) for daemon in daemons]
    output = result.output_bytes.decode(errors="replace")
    text = "".join(log.read_text() for log in logs if log.exists())
    shown = f"{events}\n{output}\n--- console ---\n{result.console_output[-2000:]}\n{text[-3000:]}"
    assert events and events[0].startswith("killed") and " 0 requests" not in events[0], shown
    assert codes == [-signal.SIGKILL, 0], shown  # the second one served to the end
    assert f"loop-done: {ROUNDS}" in output, shown
    assert not re.search(r"loop-(error|mismatch)|program-failed|I/O error", output), shown
    # What the first daemon had in flight was taken back by the second: resubmitted,
    # or settled as already answered (killed between the used index and the record).
    assert re.search(
        r"queue 2: (resubmitting [1-9]\d* inflight requests|[1-9]\d* inflight requests had "
        r"completed before the restart)",
        text,
    ), shown
    # Its C fast path served the reads meanwhile, keeping the inflight records.
    assert re.search(r"queue 2: [1-9]\d* commands answered by the fast path", text), shown
