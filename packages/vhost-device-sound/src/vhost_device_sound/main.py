"""Entry point of the `vhost-device-sound` command."""

from __future__ import annotations

import logging
import sys

from vhost_user_core import BackendError, main_guard, open_listeners, run_daemon, setup_logging

from .args import build_parser
from .backends import AudioBackend, backend_class
from .control_protocol import format_state
from .control_socket import ControlServer
from .device import SoundDevice
from .switches import Switches

log = logging.getLogger(__name__)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    backend_type = backend_class(args.backend)
    options = {"alsa": {"device": args.alsa_device}}.get(args.backend, {})

    def backend() -> AudioBackend:
        return backend_type(**options)

    # Say at start if the host side is missing; the daemon still serves (a PipeWire
    # session may come up later), and each PREPARE reports it to the guest meanwhile.
    probe = backend()
    try:
        probe.check_host()
    except BackendError as exc:
        log.warning("%s (PREPARE fails until this is fixed)", exc)
    finally:
        probe.close()
    switches = Switches(args.initial_streams)
    log.info("backend %s; %s", args.backend, format_state(switches.states()))
    # The control socket first: if it cannot be made, no vhost-user socket is left
    # behind (the daemon removes its own when it ends).
    control = ControlServer(args.control_socket, switches) if args.control_socket else None
    try:
        return run_daemon(
            lambda: SoundDevice(backend(), switches, controls=args.controls),
            open_listeners(args, suffix=False),
        )
    finally:
        if control is not None:
            control.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
