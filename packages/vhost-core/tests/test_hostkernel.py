"""The hostkernel mechanism itself: tests run inside a guest on this machine's root,
with the modules they name, and the outer pytest reports what happened inside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vhost_user_core.testing.guest_image import GuestImage, collect_modules, module_dir
from vhost_user_core.testing.hostkernel import Group, parse_results
from vhost_user_core.testing.hostroot import ModuleError, ModuleSpec, module_tree

ROOT = Path(__file__).resolve().parents[3]


# -- inside the guest ----------------------------------------------------------------------


@pytest.mark.hostkernel("i2c-stub chip_addr=0x50")
def test_named_module_is_loaded_with_its_parameters() -> None:
    assert os.uname().release.startswith("6.12.")
    assert Path("/sys/module/i2c_stub/parameters/chip_addr").read_text().split(",")[0] == "80"
    names = [p.read_text().strip() for p in Path("/sys/bus/i2c/devices").glob("i2c-*/name")]
    assert "SMBus stub driver" in names


@pytest.mark.hostkernel()
def test_the_guest_runs_this_python_and_checkout_on_a_writable_overlay() -> None:
    assert Path(sys.executable).exists()
    assert Path(__file__).read_text().startswith('"""The hostkernel mechanism')
    scratch = ROOT / "hostkernel-overlay-probe"
    scratch.write_text("written inside the guest")  # lands in the overlay's tmpfs only
    assert scratch.read_text() == "written inside the guest"
    assert os.path.ismount("/sys/kernel/config"), "configfs (gpio-sim needs it)"
    modules = Path("/lib/modules") / os.uname().release
    assert (modules / "modules.dep.bin").exists()
    assert subprocess.run(["modprobe", "-n", "vcan"], capture_output=True).returncode == 0


@pytest.mark.hostkernel("gpio-sim")
def test_out_of_tree_builds_load_by_name() -> None:
    """kmodules' gpio-sim (set up through configfs) is in the guest's tree: modprobe
    loads it by name."""
    assert Path("/sys/module/gpio_sim").is_dir()
    assert Path("/sys/kernel/config/gpio-sim").is_dir()


def test_what_the_guest_wrote_stayed_in_the_guest() -> None:
    assert not (ROOT / "hostkernel-overlay-probe").exists()


# -- outside: grouping and reporting -------------------------------------------------------


def test_module_specs_parse() -> None:
    spec = ModuleSpec.parse("snd-aloop  pcm_substreams=2 index=0")
    assert spec == ModuleSpec("snd-aloop", ("pcm_substreams=2", "index=0"))
    assert spec.key == "snd_aloop" and str(spec) == "snd-aloop pcm_substreams=2 index=0"
    for bad in ("", "a/b", "i2c-stub 0x50", "x =1"):
        with pytest.raises(ModuleError):
            ModuleSpec.parse(bad)


def test_groups_take_compatible_requirements_only() -> None:
    stub50 = ModuleSpec.parse("i2c-stub chip_addr=0x50")
    group = Group({"i2c_stub": stub50})
    assert group.fits({}) and group.fits({"i2c_stub": stub50})
    assert group.fits({"vcan": ModuleSpec("vcan")})
    assert not group.fits({"i2c_stub": ModuleSpec.parse("i2c-stub chip_addr=0x51")})


def test_results_fold_every_phase_and_survive_a_cut_off_line() -> None:
    def record(nodeid: str, when: str, outcome: str, text: str = "") -> str:
        sections = [["Captured stdout " + when, when + " said"]] if text else []
        return json.dumps(
            {"nodeid": nodeid, "when": when, "outcome": outcome, "longrepr": text,
             "crash": text[:4], "sections": sections, "duration": 0.5}
        )  # fmt: skip

    lines = [
        record("t::a", "setup", "passed"),
        record("t::a", "call", "failed", "boom in call"),
        record("t::a", "teardown", "failed", "boom in teardown"),
        record("t::b", "setup", "skipped", "Skipped: no"),
        '{"nodeid": "t::c", "wh',  # the guest died mid-line
    ]
    results, errors, finished = parse_results("\n".join(lines).encode())
    assert not finished and errors == [] and set(results) == {"t::a", "t::b"}
    a = results["t::a"]
    assert a.outcome == "failed" and a.crash == "boom" and a.duration == 1.5
    assert a.text == "boom in call\n\n(in teardown)\nboom in teardown"
    assert [title for title, _ in a.sections] == [
        "Captured stdout call",
        "Captured stdout teardown",
    ]
    assert results["t::b"].outcome == "skipped" and results["t::b"].text == "Skipped: no"
    _, _, finished = parse_results(b'{"exitstatus": 0}\n')
    assert finished


def test_extra_modules_join_the_tree_and_modprobe_prefers_them(
    guest_image: GuestImage, tmp_path: Path
) -> None:
    """The hook for out-of-tree builds: an extra .ko lands in updates/ of its own tree
    (the plain tree is untouched), and modprobe resolves the name to it."""
    plain = module_tree(guest_image)
    version = guest_image.kernel_version
    name, data = collect_modules(module_dir(plain, version), ("vcan",))[-1]  # after its deps
    assert name == "vcan"
    extra = tmp_path / "vcan.ko"
    extra.write_bytes(data)
    tree = module_tree(guest_image, [extra])
    assert tree != plain and module_tree(guest_image, [extra]) == tree
    built = {p.name for p in (module_dir(plain, version) / "updates").iterdir()}
    assert built == {"gpio-sim.ko", "i2c-virtio.ko", "gpio-virtio.ko"}  # kmodules' builds
    shown = subprocess.run(
        ["modprobe", "-d", str(tree), "-S", version, "--show-depends", "vcan"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.strip().endswith("/updates/vcan.ko"), shown


def test_outer_pytest_reports_each_inner_test_with_its_failure_output(tmp_path: Path) -> None:
    """One boot for the whole file; a pass, a failure (its assertion text and captured
    output as pytest printed them inside), a skip, and a setup error."""
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import pytest

            pytestmark = pytest.mark.hostkernel("vsock_loopback")

            @pytest.fixture
            def broken():
                raise RuntimeError("fixture broke inside")

            def test_passes():
                assert open("/sys/module/vsock_loopback/initstate").read() == "live\\n"

            def test_fails():
                print("said inside the guest")
                values = [1, 2]
                assert values == [1, 3], "lists differ"

            def test_skips():
                pytest.skip("skipped inside")

            def test_errors(broken):
                pass
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "2 failed, 1 passed, 1 skipped" in out, out
    assert "hostkernel: one boot for 4 tests (vsock_loopback): " in out, out
    assert "s, root mounted after " in out, out
    assert "AssertionError: lists differ" in out and "At index 1 diff: 2 != 3" in out, out
    assert "said inside the guest" in out and "Captured stdout call" in out, out
    assert "(in setup)" in out and "fixture broke inside" in out, out
    assert "SKIPPED [1] test_inner.py:18: Skipped: skipped inside" in out, out
    assert "FAILED test_inner.py::test_fails - AssertionError: lists differ" in out, out
    assert "test_inner.py::test_passes" in out
