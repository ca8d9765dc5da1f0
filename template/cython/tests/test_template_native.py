"""The package's Cython module is built, installed and works."""

from __future__ import annotations

import sysconfig

from vhost_device_template import _native


def test_the_module_is_compiled() -> None:
    assert _native.__file__ is not None
    assert _native.__file__.endswith(sysconfig.get_config_var("EXT_SUFFIX"))


def test_byte_sum() -> None:
    assert _native.byte_sum(b"") == 0
    assert _native.byte_sum(b"\x01\x02\xff") == 258
    assert _native.byte_sum(memoryview(bytes(range(256)))) == 255 * 128
