"""The command: upstream's flags into the config, the refusals, and the daemon end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_gpu
from vhost_device_gpu.args import GpuConfig, GpuFlags, build_parser
from vhost_device_gpu.errors import ConfigError, GpuError
from vhost_user_core import VhostUserError
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DAEMON = [sys.executable, "-m", "vhost_device_gpu.main"]


def _config(*flags: str) -> GpuConfig:
    return GpuConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_defaults_are_upstreams() -> None:
    assert _config("-g", "2d") == GpuConfig("2d", (), GpuFlags(True, False, True, True), False)


def test_flags_into_the_config() -> None:
    config = _config(
        "--gpu-mode", "null", "--use-egl", "false", "--use-glx", "true", "--use-gles",
        "false", "--use-surfaceless", "false", "--headless",
    )  # fmt: skip
    assert config == GpuConfig("null", (), GpuFlags(False, True, False, False), True)


def test_the_mode_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-s", "/tmp/x.sock"])
    assert "--gpu-mode" in capsys.readouterr().err


def test_gfxstream_is_refused() -> None:
    with pytest.raises(ConfigError, match="--gpu-mode gfxstream is not available"):
        _config("-g", "gfxstream")


@pytest.mark.parametrize("mode", ["virglrenderer", "virgl-renderer"])
def test_virgl_mode_and_upstreams_alias(mode: str) -> None:
    config = _config("-g", mode, "-c", "virgl2", "--use-gles", "false")
    assert (config.mode, config.capsets) == ("virglrenderer", ("virgl2",))
    options = config.virgl
    assert (options.use_egl, options.use_gles, options.use_surfaceless) == (True, False, True)
    assert options.flags == 0x1 | 0x2 | 0x8  # EGL | THREAD_SYNC | SURFACELESS


def test_virgl_refuses_glx_and_no_egl() -> None:
    with pytest.raises(ConfigError, match="--use-glx true"):
        _config("-g", "virglrenderer", "--use-glx", "true")
    with pytest.raises(ConfigError, match="--use-egl false"):
        _config("-g", "virglrenderer", "--use-egl", "false")


def test_a_capset_needs_its_mode() -> None:
    with pytest.raises(ConfigError, match="capset virgl2 needs --gpu-mode virglrenderer"):
        _config("-g", "2d", "-c", "virgl2")


def test_an_unknown_capset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _config("-g", "2d", "-c", "virgl,venus")
    assert "unknown capset 'venus'" in capsys.readouterr().err


def test_gpu_device_needs_virgl() -> None:
    with pytest.raises(ConfigError, match="--gpu-device needs --gpu-mode virglrenderer"):
        _config("-g", "2d", "--gpu-device", "/dev/dri/renderD128")


def test_a_bad_boolean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _config("-g", "2d", "--use-egl", "maybe")
    assert "'maybe' is not true or false" in capsys.readouterr().err


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-gpu {vhost_device_gpu.__version__}\n"


def test_a_refused_mode_is_one_line_and_status_1(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "g.sock"), "-g", "gfxstream"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == (
        "error: --gpu-mode gfxstream is not available in this version: "
        "use -g virglrenderer, 2d or null\n"
    )
    assert not (tmp_path / "g.sock").exists()  # checked before any socket


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        # no render node here: EGL without the surfaceless platform has no display
        (
            ["--use-surfaceless", "false"],
            "error: virglrenderer cannot start with flags 0x13 (without a render node, "
            "--use-surfaceless): [Errno 1] virgl_renderer_init(flags 0x13) = -1\n",
        ),
        (["--gpu-device", "/nonexistent/renderD128"], None),
    ],
)
def test_virgl_that_cannot_start_is_one_line_before_the_socket(
    tmp_path: Path, flags: list[str], message: str | None
) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "g.sock"), "-g", "virglrenderer", *flags]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    if message is None:
        message = "error: --gpu-device /nonexistent/renderD128: No such file or directory\n"
    assert run.stderr.splitlines()[-1] + "\n" == message, run.stderr
    assert not (tmp_path / "g.sock").exists()


def test_the_daemon_listens_on_the_exact_path_and_again_after_a_disconnect(
    tmp_path: Path,
) -> None:
    socket = tmp_path / "g.sock"  # upstream's -s is the path itself, no 0 suffix
    argv = [*DAEMON, "-s", str(socket), "-g", "2d", "--headless"]
    with daemon_process(argv, log=tmp_path / "log", sockets=[socket]):
        for _ in range(2):
            with Frontend.connect(socket) as frontend:
                assert frontend.get_features() & (1 << 2)


def test_errors_are_rooted_in_the_core_tree() -> None:
    from vhost_device_gpu.renderer import CommandError

    assert issubclass(GpuError, VhostUserError)
    assert issubclass(ConfigError, ValueError) and issubclass(CommandError, GpuError)


def test_wayland_socket_into_the_config() -> None:
    config = _config("-g", "null", "--wayland-socket", "/run/user/1000/wayland-vm1")
    assert config.wayland_socket == "/run/user/1000/wayland-vm1"
    assert _config("-g", "2d").wayland_socket is None
    with pytest.raises(ConfigError, match="--wayland-socket needs a path"):
        _config("-g", "2d", "--wayland-socket", "")
    # one daemon with both context kinds: virgl's capsets and capset 5
    both = _config("-g", "virglrenderer", "--wayland-socket", "/run/user/1000/wayland-vm1")
    assert (both.mode, both.wayland_socket) == ("virglrenderer", "/run/user/1000/wayland-vm1")


@pytest.mark.parametrize("mode", ["2d", "virglrenderer"])
def test_the_daemon_offers_cross_domain_with_a_wayland_socket(tmp_path: Path, mode: str) -> None:
    """As a process: capset 5's features and the SHMEM protocol bit, before the
    compositor even exists (the socket is connected to at a context's INIT only);
    with virglrenderer, its capsets too (one daemon, both kinds of context)."""
    socket = tmp_path / "g.sock"
    argv = [*DAEMON, "-s", str(socket), "-g", mode, "--headless", "--wayland-socket",
            str(tmp_path / "no-compositor-yet")]  # fmt: skip
    with daemon_process(argv, log=tmp_path / "log", sockets=[socket]):
        with Frontend.connect(socket) as frontend:
            assert frontend.get_features() & 0b11001 == 0b11001  # VIRGL, BLOB, CONTEXT_INIT
            assert frontend.get_protocol_features() & (1 << 21)
            frontend.negotiate()
            num_capsets = int.from_bytes(frontend.get_config(12, 4), "little")
            assert num_capsets == (3 if mode == "virglrenderer" else 1)
