"""vhost-device-rng driven by the core's Python frontend, as a guest driver would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue

#: The `rng_daemon` fixture (conftest.py): start the daemon with flags, get its base path.
#: Not imported from conftest: every package has one, and only one can be `conftest`.
RngDaemon = Callable[..., Path]


def request(
    frontend: Frontend, queue: FrontendQueue, sizes: list[int], timeout: float = 5.0
) -> list[bytes]:
    """Post one write-only buffer per size, return what the device wrote into each."""
    assert frontend.ram is not None
    heads = {}
    for size in sizes:
        gpa = frontend.ram.alloc(size)
        heads[queue.driver.add([(gpa, size, True)])] = gpa
    queue.publish()
    used = queue.wait_used(len(sizes), timeout)
    return [frontend.ram.memory.read(heads[head], length) for head, length in used]


def test_serves_random_bytes(rng_daemon: RngDaemon) -> None:
    base = rng_daemon()
    with Frontend.connect(f"{base}0") as frontend:
        (queue,) = frontend.start_device(1, 256)
        chunks = request(frontend, queue, [64] * 128)
    assert [len(c) for c in chunks] == [64] * 128
    data = b"".join(chunks)
    assert len(set(chunks)) == 128
    assert len(set(data)) > 250  # all byte values show up in 8 KiB of entropy


def test_bytes_come_from_the_source_in_order(rng_daemon: RngDaemon, tmp_path: Path) -> None:
    source = tmp_path / "entropy.bin"
    source.write_bytes(bytes(range(256)) * 64)
    base = rng_daemon("--rng-source", str(source))
    with Frontend.connect(f"{base}0") as frontend:
        (queue,) = frontend.start_device(1, 64)
        got = b"".join(request(frontend, queue, [100, 1000, 7]))
    assert got == source.read_bytes()[:1107]


def test_exhausted_source_stops_serving_without_dying(
    rng_daemon: RngDaemon, tmp_path: Path
) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(b"x" * 100)
    base = rng_daemon("--rng-source", str(source))
    with Frontend.connect(f"{base}0") as frontend:
        (queue,) = frontend.start_device(1, 64)
        assert [len(c) for c in request(frontend, queue, [64, 64])] == [64, 36]
        assert frontend.ram is not None
        queue.driver.add([(frontend.ram.alloc(64), 64, True)])
        queue.publish()
        time.sleep(0.3)
        assert queue.driver.get_used() == []
        assert frontend.get_queue_num() == 1


def test_rate_limit_defers_without_blocking(rng_daemon: RngDaemon) -> None:
    base = rng_daemon("--period", "600", "--max-bytes", "1000")
    with Frontend.connect(f"{base}0") as frontend:
        (queue,) = frontend.start_device(1, 64)
        assert frontend.ram is not None
        for _ in range(4):
            queue.driver.add([(frontend.ram.alloc(512), 512, True)])
        start = time.monotonic()
        queue.publish()
        first = queue.wait_used(2)
        assert sorted(length for _, length in first) == [488, 512]
        assert time.monotonic() - start < 0.4
        # While the ring waits for the next period, control requests that need the
        # session lock are answered at once: the worker is not sleeping on it.
        t0 = time.monotonic()
        frontend.set_vring_enable(0, True)
        assert time.monotonic() - t0 < 0.1
        rest = queue.wait_used(2, timeout=3)
        elapsed = time.monotonic() - start
        assert sorted(length for _, length in rest) == [488, 512]
        assert 0.5 < elapsed < 1.6


def test_rate_limit_is_shared_by_all_sockets(rng_daemon: RngDaemon) -> None:
    base = rng_daemon("-c", "2", "--period", "60000", "--max-bytes", "1000")
    served = 0
    frontends = [Frontend.connect(f"{base}{i}") for i in range(2)]
    try:
        for frontend in frontends:
            (queue,) = frontend.start_device(1, 64)
            assert frontend.ram is not None
            queue.driver.add([(frontend.ram.alloc(800), 800, True)])
            queue.publish()
            if queue.wait_call(0.5):
                served += sum(length for _, length in queue.driver.get_used())
    finally:
        for frontend in frontends:
            frontend.close()
    assert served == 1000


def test_read_only_and_out_of_memory_buffers_get_nothing(rng_daemon: RngDaemon) -> None:
    base = rng_daemon()
    with Frontend.connect(f"{base}0") as frontend:
        (queue,) = frontend.start_device(1, 64)
        assert frontend.ram is not None
        readonly = frontend.ram.alloc(64)
        frontend.ram.memory.write(readonly, b"\xaa" * 64)
        bad = queue.driver.add([(readonly, 64, False)])
        outside = queue.driver.add([(1 << 40, 64, True)])
        good_gpa = frontend.ram.alloc(64)
        good = queue.driver.add([(good_gpa, 64, True)])
        queue.publish()
        used = dict(queue.wait_used(3))
        assert used == {bad: 0, outside: 0, good: 64}
        assert frontend.ram.memory.read(readonly, 64) == b"\xaa" * 64
        # The device keeps serving after the hostile requests.
        assert [len(c) for c in request(frontend, queue, [32])] == [32]


def test_second_connection_gets_a_fresh_device(rng_daemon: RngDaemon) -> None:
    base = rng_daemon()
    for _ in range(2):
        with Frontend.connect(f"{base}0") as frontend:
            (queue,) = frontend.start_device(1, 128)
            assert [len(c) for c in request(frontend, queue, [16, 16])] == [16, 16]


def test_socket_removed_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    base = tmp_path / "rng.sock"
    proc = subprocess.Popen([sys.executable, "-m", "vhost_device_rng.main", "-s", str(base)])
    try:
        Frontend.connect(f"{base}0").close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert not Path(f"{base}0").exists()


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vhost_device_rng.main",
            "-s",
            str(tmp_path / "r.sock"),
            "-f",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert b"cannot open rng source" in result.stderr
    assert not (tmp_path / "r.sock0").exists()
