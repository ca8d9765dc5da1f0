"""The command: flags into the config, one-line errors, --version, and the installed
daemon end to end on an image file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_scsi
from vhost_device_scsi.args import ScsiConfig, build_parser
from vhost_device_scsi.errors import ConfigError, DeviceError, ImageError
from vhost_device_scsi.host import parse_size

DAEMON = [sys.executable, "-m", "vhost_device_scsi.main"]


def _config(*flags: str) -> ScsiConfig:
    return ScsiConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    assert _config() == ScsiConfig(images=())
    assert _config("-r", "--solid-state", "--num-queues", "2", "a.img", "mem:1M") == ScsiConfig(
        ("a.img", "mem:1M"), read_only=True, solid_state=True, num_queues=2
    )
    assert _config("--read-only").read_only


def test_at_most_256_images() -> None:
    assert len(_config(*["mem:1M"] * 256).images) == 256
    with pytest.raises(ConfigError, match="257 images; at most 256"):
        _config(*["mem:1M"] * 257)


def test_num_queues_bounds() -> None:
    with pytest.raises(ConfigError, match="at most 254"):
        _config("--num-queues", "255")
    with pytest.raises(SystemExit):
        _config("--num-queues", "0")


@pytest.mark.parametrize(("text", "size"), [("4096", 4096), ("64M", 64 << 20), ("1g", 1 << 30)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-scsi {vhost_device_scsi.__version__}\n"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("missing.img", "error: cannot open image {tmp}/missing.img: No such file or directory\n"),
        ("tiny.img", "error: image {tmp}/tiny.img is 100 bytes, under one 512-byte block\n"),
        ("mem:12x", "error: mem:12x: '12x' is not a size (like 64M)\n"),
        ("mem:100", "error: mem:100: 100 bytes is not a whole number of 512-byte blocks\n"),
    ],
    ids=["missing", "tiny", "bad-size", "not-blocks"],
)
def test_a_bad_image_is_one_line_and_status_1(tmp_path: Path, image: str, message: str) -> None:
    (tmp_path / "tiny.img").write_bytes(bytes(100))
    spec = image if image.startswith("mem:") else str(tmp_path / image)
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), spec]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == message.format(tmp=tmp_path)
    assert not (tmp_path / "t.sock").exists()  # checked before the socket


def test_too_many_images_is_one_line(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), *["mem:1M"] * 257]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (run.returncode, run.stderr) == (1, "error: 257 images; at most 256 LUNs are served\n")


def test_errors_are_rooted_in_the_core_tree() -> None:
    from vhost_user_core import BackendError, VhostUserError

    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(ImageError, BackendError) and issubclass(ImageError, DeviceError)
    assert ImageError("gone", Path("/x")).path == Path("/x")


def test_the_daemon_listens_again_after_a_frontend_leaves(tmp_path: Path) -> None:
    """Upstream exits after its first frontend; this one serves the next."""
    from test_scsi_smoke import smoke

    image = tmp_path / "one"
    image.mkdir()
    smoke(DAEMON, image)  # one connection, then SIGTERM: covered there
    from vhost_user_core.frontend import Frontend
    from vhost_user_core.testing.harness import daemon_process

    sock = tmp_path / "s.sock"
    argv = [*DAEMON, "-s", str(sock), "mem:1M"]
    with daemon_process(argv, log=tmp_path / "log", sockets=[sock]):
        for _ in range(2):
            with Frontend.connect(sock) as frontend:
                frontend.start_device(3, 128)
                assert frontend.get_queue_num() == 18  # controlq, eventq, 16 request queues
