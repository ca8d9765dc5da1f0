"""A generated sysfs IIO device, as the kernel lays one out: raw values, scales, scan
elements and a buffer, with a named pipe standing in for /dev/iio:deviceN."""

from __future__ import annotations

import os
from pathlib import Path


def make_iio_device(root: Path, *, fifo: bool = True) -> tuple[Path, Path]:
    """An accelerometer (x, y, z; s16 in the buffer) and a temperature channel;
    returns (device directory, buffer node)."""
    device = root / "sys" / "iio:device0"
    (device / "scan_elements").mkdir(parents=True)
    (device / "buffer").mkdir()
    files = {
        "name": "test-accel\n",
        "in_accel_x_raw": "100\n",
        "in_accel_y_raw": "-200\n",
        "in_accel_z_raw": "1000\n",
        "in_accel_scale": "0.009806\n",  # m/s² per count
        "in_temp_raw": "250\n",
        "in_temp_scale": "100\n",  # m°C per count
        "in_temp_offset": "-50\n",
        "buffer/enable": "0\n",
        "buffer/length": "16\n",
        "scan_elements/in_timestamp_en": "0\n",
        "scan_elements/in_timestamp_index": "3\n",
        "scan_elements/in_timestamp_type": "le:s64/64>>0\n",
    }
    for index, axis in enumerate("xyz"):
        files[f"scan_elements/in_accel_{axis}_en"] = "0\n"
        files[f"scan_elements/in_accel_{axis}_index"] = f"{index}\n"
        files[f"scan_elements/in_accel_{axis}_type"] = "le:s16/16>>0\n"
    for name, text in files.items():
        (device / name).write_text(text)
    node = root / "dev" / "iio:device0"
    node.parent.mkdir()
    if fifo:
        os.mkfifo(node)
    return device, node
