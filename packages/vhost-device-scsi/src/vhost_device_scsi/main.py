"""Entry point: flags → checked config → images → socket → serve until SIGTERM."""

from __future__ import annotations

import sys

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import ScsiConfig, build_parser
from .device import ScsiBackend
from .host import Image, open_image
from .scsi.lun import Disk
from .scsi.target import Target


def open_images(config: ScsiConfig) -> list[Image]:
    images: list[Image] = []
    try:
        for spec in config.images:
            images.append(open_image(spec, read_only=config.read_only))
    except BaseException:
        for image in images:
            image.close()
        raise
    return images


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = ScsiConfig.from_args(args)
    images = open_images(config)
    try:
        target = Target(
            [Disk(image, i, solid_state=config.solid_state) for i, image in enumerate(images)]
        )
        return run_daemon(
            lambda: ScsiBackend(
                target, images, request_queues=config.num_queues, io_threads=config.io_threads
            ),
            open_listeners(args, suffix=False),
        )
    finally:
        for image in images:
            image.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
