"""The host's side of `xtask demo gpio`: a mock chip whose line 2 the host raises when
the guest waits for it, and lowers once the guest has seen the rising edge."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path


def host(workdir: Path) -> tuple[list[str], dict[str, Callable[[], None]]]:
    spec = importlib.util.spec_from_file_location(
        "gpio_guest", Path(__file__).parent.parent / "tests" / "gpio_guest.py"
    )
    assert spec is not None and spec.loader is not None
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    control = workdir / "gpio.ctl"
    return ["-l", "s8", "--mock-control", str(control)], {
        "EDGE-READY line=2": lambda: helper.drive(control, 0, 2, 1),
        "EDGE line=2 type=rising": lambda: helper.drive(control, 0, 2, 0),
    }
