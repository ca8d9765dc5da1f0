"""The device API: what `vhost_user_core` exports, the backend contract checked at
construction, and the `Vring` methods a device uses instead of the ring's internals."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import vhost_user_core
from vhost_user_core import (
    BackendContractError,
    VhostUserBackend,
    VhostUserError,
    Vring,
    Worker,
)
from vhost_user_core.driver import DriverQueue
from vhost_user_core.frontend import Frontend
from vhost_user_core.memory import GuestMemory
from vhost_user_core.testing.harness import running_daemon


class Minimal(VhostUserBackend):
    def handle_queue(self, vring: Vring) -> None:
        pass


def test_every_exported_name_resolves() -> None:
    for name in vhost_user_core.__all__:
        assert getattr(vhost_user_core, name) is not None, name


def test_a_complete_backend_constructs() -> None:
    backend = Minimal()
    assert backend.queues_per_thread() == [1]


def test_missing_handle_queue_fails_at_construction() -> None:
    class NoHandler(VhostUserBackend):
        num_queues = 2

    with pytest.raises(BackendContractError) as info:
        NoHandler()
    message = str(info.value)
    assert "\n" not in message
    assert "NoHandler" in message and "handle_queue" in message


def test_contract_error_is_a_type_error_and_a_vhost_user_error() -> None:
    """A programming error (TypeError), which main_guard still prints as one line."""
    assert issubclass(BackendContractError, TypeError)
    assert issubclass(BackendContractError, VhostUserError)


@pytest.mark.parametrize("num_queues", [0, -1, 257, 1.5, True, "2"])
def test_nonsensical_queue_counts_fail(num_queues: object) -> None:
    class Bad(Minimal):
        pass

    Bad.num_queues = num_queues  # type: ignore[assignment]
    with pytest.raises(BackendContractError, match="num_queues must be an integer in 1..256"):
        Bad()


@pytest.mark.parametrize("size", [0, 1000, 65536, -8])
def test_nonsensical_queue_sizes_fail(size: int) -> None:
    class Bad(Minimal):
        max_queue_size = size

    with pytest.raises(BackendContractError, match="max_queue_size must be a power of two"):
        Bad()


def test_attributes_set_in_init_are_checked_after_it() -> None:
    """A device may size its queues from its configuration (vsock does)."""

    class FromConfig(Minimal):
        def __init__(self, queue_size: int) -> None:
            self.max_queue_size = queue_size

    assert FromConfig(512).max_queue_size == 512
    with pytest.raises(BackendContractError, match="not 100$"):
        FromConfig(100)


@pytest.mark.parametrize(
    ("masks", "complaint"),
    [
        ([], "gave no worker thread"),
        ([0b011, 0b110], "on two threads"),
        ([0b001, 0b010], "leaves queues 0x4 on no thread"),
        ([0b1111], "is not a mask of queues 0..2"),
    ],
)
def test_thread_maps_that_cannot_work_fail(masks: list[int], complaint: str) -> None:
    class Threads(Minimal):
        num_queues = 3

        def queues_per_thread(self) -> list[int]:
            return masks

    with pytest.raises(BackendContractError, match=complaint):
        Threads()


def test_features_must_be_a_64_bit_mask() -> None:
    class Wide(Minimal):
        features = 1 << 64

    with pytest.raises(BackendContractError, match="features must be a 64-bit"):
        Wide()


# -- Vring ---------------------------------------------------------------------------

RING, SIZE = 0x0, 0x10000


class Ring:
    """A Vring on real (memfd) guest memory, driven by a DriverQueue, with the
    session's side played by hand."""

    def __init__(self, size: int = 8) -> None:
        self.fd = os.memfd_create("vring", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, SIZE)
        self.driver_mem, self.device_mem = GuestMemory(), GuestMemory()
        self.driver_mem.add_region(0, SIZE, 0, 0, self.fd)
        self.device_mem.add_region(0, SIZE, 0, 0, self.fd)
        d, a, _ = DriverQueue.layout(size)
        desc, avail, used = RING, RING + d, (RING + d + a + 3) & ~3
        self.driver = DriverQueue(self.driver_mem, size, desc, avail, used)
        self.worker = Worker("vring-test", threading.Lock())
        self.vring = Vring(0, 256, self.worker)
        self.vring.queue.set_size(size)
        self.vring.queue.set_addresses(self.device_mem, desc, avail, used)
        self.vring._set_kick_fd(os.eventfd(0, os.EFD_CLOEXEC))
        self.vring._set_enabled(True)

    def post(self, count: int) -> bool:
        for i in range(count):
            self.driver.add([(0x8000 + 64 * i, 64, True)])
        return self.driver.publish()

    def close(self) -> None:
        self.vring._close_fds()
        self.worker.stop()
        self.driver_mem.close()
        self.device_mem.close()
        os.close(self.fd)


@pytest.fixture
def ring() -> Iterator[Ring]:
    r = Ring()
    yield r
    r.close()


def test_vring_state_is_read_only_for_a_device(ring: Ring) -> None:
    for name in ("index", "queue", "worker", "enabled", "started", "call_fd", "kick_fd"):
        with pytest.raises(AttributeError):
            setattr(ring.vring, name, None)
    assert ring.vring.active


def test_poll_leaves_kicks_off_until_enable_notification(ring: Ring) -> None:
    assert ring.post(2)  # the device asks for kicks at first
    assert len(ring.vring.poll()) == 2
    assert not ring.post(1)  # poll() turned kicks off
    assert ring.vring.enable_notification()  # and one chain came meanwhile
    assert len(ring.vring.poll()) == 1
    assert not ring.vring.enable_notification()  # nothing new: sleep until a kick
    assert ring.post(1)


def test_disable_notification_is_the_drivers_hint(ring: Ring) -> None:
    ring.vring.disable_notification()
    assert not ring.post(1)
    assert ring.vring.enable_notification()


def test_enable_notification_on_a_stopped_ring_is_false(ring: Ring) -> None:
    ring.post(1)
    ring.vring.queue.reset()
    assert not ring.vring.active
    assert not ring.vring.enable_notification()


def test_rewind_gives_chains_back_in_order(ring: Ring) -> None:
    ring.post(3)
    heads = [chain.head for chain in ring.vring.poll()]
    ring.vring.rewind(2)
    assert [chain.head for chain in ring.vring.poll()] == heads[1:]
    assert not ring.vring.poll()


def test_complete_without_notify_leaves_the_interrupt_to_signal_used(ring: Ring) -> None:
    call = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    ring.vring._set_call_fd(call)
    ring.post(2)
    batch = ring.vring.poll()
    ring.vring.complete(batch, [0, 0], notify=False)
    with pytest.raises(BlockingIOError):
        os.eventfd_read(call)  # used, but not interrupted yet
    ring.vring.signal_used()
    assert os.eventfd_read(call) == 1


# -- the README's example -------------------------------------------------------------


def _readme_example() -> dict[str, object]:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Device API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_example_device_serves_zeros(tmp_path: Path) -> None:
    example = _readme_example()
    backend = example["ZeroBackend"]
    assert callable(example["main"])
    with running_daemon(backend, tmp_path / "zero.sock"):  # type: ignore[arg-type]
        with Frontend.connect(tmp_path / "zero.sock") as frontend:
            (queue,) = frontend.start_device(1, 64)
            assert frontend.ram is not None
            gpas = [frontend.ram.alloc(32) for _ in range(3)]
            for gpa in gpas:
                frontend.ram.memory.write(gpa, b"\xff" * 32)
                queue.driver.add([(gpa, 32, True)])
            queue.publish()
            used = queue.wait_used(3, 5.0)
            assert sorted(length for _, length in used) == [32, 32, 32]
            assert all(frontend.ram.memory.read(gpa, 32) == bytes(32) for gpa in gpas)


# -- the import rule, for every device of the workspace --------------------------------

WORKSPACE = Path(__file__).resolve().parents[3]
#: What device code may import beyond the top level: the VMM side and the test plugin.
TEST_ONLY = ("vhost_user_core.frontend", "vhost_user_core.testing")


def _device_sources() -> list[Path]:
    roots = [*WORKSPACE.glob("packages/vhost-device-*/src"), *WORKSPACE.glob("staging/*/src")]
    roots.append(WORKSPACE / "template" / "src")
    return sorted(p for root in roots for ext in ("*.py", "*.pyi") for p in root.rglob(ext))


def test_devices_import_only_the_top_level() -> None:
    import ast

    sources = _device_sources()
    assert sources, "no device sources found"
    offenders = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                inner = name.startswith("vhost_user_core.")
                if inner and not name.startswith(TEST_ONLY):
                    offenders.append(f"{path.relative_to(WORKSPACE)}:{node.lineno}: {name}")
    assert not offenders, "import these from vhost_user_core itself: " + "; ".join(offenders)


def test_devices_leave_the_ring_internals_alone() -> None:
    """Python device code uses Vring's methods; `vring.queue` is for a device's Cython."""
    offenders = [
        f"{path.relative_to(WORKSPACE)}:{i}"
        for path in _device_sources()
        if path.suffix == ".py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if ".queue.next_avail" in line or ".queue.enable_notification" in line
    ]
    assert not offenders, offenders
