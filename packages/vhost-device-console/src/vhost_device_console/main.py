"""Entry point: flags → checked config → one host end per socket → serve until SIGTERM
(or the nested escape, Ctrl-] q)."""

from __future__ import annotations

import sys
from functools import partial

from vhost_user_core import Daemon, main_guard, open_listeners, run_all, setup_logging

from .args import ConsoleConfig, build_parser
from .device import ConsoleBackend
from .host import Host, NetworkHost, PtyHost, TerminalHost


def open_hosts(config: ConsoleConfig) -> list[Host]:
    hosts: list[Host] = []
    try:
        for i in range(config.socket_count):
            if config.backend == "nested":
                hosts.append(TerminalHost())
            elif config.backend == "pty":
                pty = PtyHost()
                # What QEMU's pty chardev prints, so scripts that parse it work here.
                print(f"char device redirected to {pty.path} (label console{i})", file=sys.stderr)
                hosts.append(pty)
            else:
                hosts.append(NetworkHost(config.tcp_port + i if config.tcp_port else 0))
    except BaseException:
        for host in hosts:
            host.close()
        raise
    return hosts


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = ConsoleConfig.from_args(args)
    # Hosts first: the pty line is printed before the socket appears, so whoever waits
    # for the socket can read it.
    hosts = open_hosts(config)
    try:
        listeners = open_listeners(args)
    except BaseException:
        for host in hosts:
            host.close()
        raise
    try:
        daemons = [
            Daemon(partial(ConsoleBackend, host, config.max_queue_size), [listener])
            for host, listener in zip(hosts, listeners, strict=True)
        ]
        run_all(daemons)
        return 0
    finally:
        for host in hosts:
            host.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
