"""Entry point of the `vhost-device-sound` command."""

from __future__ import annotations

import sys


def main() -> int:
    raise SystemExit("vhost-device-sound: the device is not written yet")


if __name__ == "__main__":
    sys.exit(main())
