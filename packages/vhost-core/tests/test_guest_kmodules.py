"""The out-of-tree guest modules: their cache, and one boot that uses all three."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vhost_user_core.testing import kmodules
from vhost_user_core.testing.qemu import Guest

VERSION = "6.12.117+deb12-amd64"


def test_cache_key_follows_kernel_and_recipe() -> None:
    recipe = kmodules.recipe()
    key = kmodules.cache_key(VERSION, recipe)
    assert key == kmodules.cache_key(VERSION, recipe)
    assert key != kmodules.cache_key("6.12.118+deb12-amd64", recipe)
    assert key != kmodules.cache_key(VERSION, recipe.replace("irq_to_desc", "irq_to_desc "))


def test_recipe_covers_sources_and_fixups() -> None:
    recipe = json.loads(kmodules.recipe())
    assert set(recipe["modules"]) == {"gpio-sim", "i2c-virtio", "gpio-virtio"}
    assert ["irq_sim", "kernel/irq/irq_sim.c"] in recipe["modules"]["gpio-sim"][1]
    assert recipe["fixups"][0][0] == "kernel/irq/irq_sim.c"


def test_kbuild_names_composite_objects() -> None:
    assert kmodules.kbuild(["i2c-virtio", "gpio-sim"]) == (
        "obj-$(CONFIG_I2C_VIRTIO) += i2c-virtio.o\n"
        "obj-$(CONFIG_GPIO_SIM) += gpio-sim.o\n"
        "gpio-sim-y := gpio-sim-main.o irq_sim.o\n"
    )


def _fake_entry(directory: Path) -> Path:
    """A cache entry as build_out_of_tree leaves it (contents are not real modules)."""
    key = kmodules.cache_key(VERSION, kmodules.recipe())
    entry = directory / "kmod" / f"{VERSION}-{key}"
    entry.mkdir(parents=True)
    ko = {}
    for name in kmodules.MODULES:
        data = f"vermagic={VERSION} SMP\0{name}".encode()
        (entry / f"{name}.ko").write_bytes(data)
        ko[name] = hashlib.sha256(data).hexdigest()
    (entry / "manifest.json").write_text(json.dumps({"ko": ko}))
    return entry


def test_cache_hit_needs_neither_apt_nor_a_build(tmp_path: Path) -> None:
    entry = _fake_entry(tmp_path)
    found = kmodules.build_out_of_tree(VERSION, ["gpio-sim"], directory=tmp_path)
    assert found == {"gpio-sim": entry / "gpio-sim.ko"}


def test_damaged_cache_entry_is_not_used(tmp_path: Path) -> None:
    entry = _fake_entry(tmp_path)
    assert kmodules._cached(entry) is not None
    (entry / "i2c-virtio.ko").write_bytes(b"truncated")
    assert kmodules._cached(entry) is None
    (entry / "i2c-virtio.ko").unlink()
    assert kmodules._cached(entry) is None


def test_vermagic_is_read_from_the_module() -> None:
    assert kmodules.vermagic(b"\0license=GPL\0vermagic=6.12.1 SMP mod_unload \0") == (
        "6.12.1 SMP mod_unload "
    )
    with pytest.raises(RuntimeError):
        kmodules.vermagic(b"no modinfo")


def test_unknown_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="i2c-stub"):
        kmodules.build_out_of_tree(VERSION, ["i2c-stub"], directory=tmp_path)


GPIO_SIM_SCRIPT = r"""
set -e
for m in configfs i2c_virtio gpio_virtio gpio_sim; do
    [ -d /sys/module/$m ] && echo "boot-loaded=$m"
done
insmod /lib/modules/gpio_sim.ko
mount -t configfs none /sys/kernel/config
sim=/sys/kernel/config/gpio-sim/chip
mkdir $sim $sim/bank0 $sim/bank0/line2
echo 5 > $sim/bank0/num_lines
echo vhost-line > $sim/bank0/line2/name
echo 1 > $sim/live
chip=$(cat $sim/bank0/chip_name)
echo "chip=$chip"
[ -c /dev/$chip ] && echo "chardev=/dev/$chip"
echo "sim-lines=$(ls -d /sys/bus/gpio/devices/$chip/sim_gpio* | wc -l)"
legacy=$(ls -d /sys/class/gpio/gpiochip*)
echo "ngpio=$(cat $legacy/ngpio)"
echo $(($(cat $legacy/base) + 2)) > /sys/class/gpio/export
for pull in pull-up pull-down; do
    echo $pull > /sys/bus/gpio/devices/$chip/sim_gpio2/pull
    echo "$pull=$(cat /sys/class/gpio/gpio*/value)"
done
"""


@pytest.mark.guest
def test_out_of_tree_modules_work_in_the_guest(guest: Guest) -> None:
    """i2c-virtio and gpio-virtio load at boot; gpio-sim loads on demand and makes a
    chip whose line follows the simulated pull, read through gpiolib."""
    result = guest.run(GPIO_SIM_SCRIPT)
    assert result.rc == 0, result.console_output
    lines = result.script_output.splitlines()
    facts = dict(line.split("=", 1) for line in lines if "=" in line and " " not in line)
    loaded = [line.split("=", 1)[1] for line in lines if line.startswith("boot-loaded=")]
    assert loaded == ["configfs", "i2c_virtio", "gpio_virtio"]
    assert facts["chip"].startswith("gpiochip")
    assert facts["chardev"] == f"/dev/{facts['chip']}"
    assert facts["sim-lines"] == facts["ngpio"] == "5"
    assert (facts["pull-up"], facts["pull-down"]) == ("1", "0")
