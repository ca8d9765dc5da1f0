"""Entry point of the `vhost-device-vsock` command: one daemon per VM, one process."""

from __future__ import annotations

import resource
import sys
from contextlib import ExitStack

from vhost_user_core import (
    Daemon,
    Listener,
    VhostUserError,
    main_guard,
    run_all,
    setup_logging,
)

from .args import build_parser, vm_configs
from .errors import HostSideError, VsockError
from .vm import SiblingMap, VirtualMachine


def raise_fd_limit() -> None:
    """Each vsock connection holds a host socket, and a VM may have 1024 of them: use
    the hard limit on open files, not the soft one (often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit: connections beyond it are refused, not fatal


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    raise_fd_limit()
    configs = vm_configs(args)
    siblings = SiblingMap()
    with ExitStack() as cleanup:
        daemons = []
        for config in configs:
            try:
                vm = VirtualMachine(config, siblings)
            except VsockError:
                raise
            except (OSError, VhostUserError) as exc:  # a listener or the hybrid socket
                raise HostSideError(config.guest_cid, str(exc)) from exc
            cleanup.callback(vm.close)
            listener = Listener.bind(config.socket)
            cleanup.callback(listener.close)
            daemons.append(Daemon(vm.new_backend, [listener]))
        run_all(daemons)
    return 0


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
