"""A minimal device for the core's own tests: queue 0 echoes readable bytes back."""

from __future__ import annotations

import argparse
import sys
import threading

from vhost_user_core import (
    STANDARD_FEATURES,
    BackendError,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
)


class EchoBackend(VhostUserBackend):
    name = "echo"
    num_queues = 2
    max_queue_size = 256
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ | ProtocolFeature.BACKEND_REQ

    instances: list[EchoBackend] = []

    def __init__(self) -> None:
        self.config = bytearray(b"ECHOCFG\0")
        self.handled = 0
        self.resets = 0
        self.closed = threading.Event()
        EchoBackend.instances.append(self)

    def config_space(self) -> bytes:
        return bytes(self.config)

    def set_config(self, offset: int, data: bytes) -> None:
        if offset + len(data) > len(self.config):
            raise BackendError("config write out of range")
        self.config[offset : offset + len(data)] = data

    def handle_queue(self, vring: Vring) -> None:
        self.handled += 1
        for batch in vring.batches():
            lengths = []
            for chain in batch:
                if chain.error:
                    lengths.append(0)
                    continue
                lengths.append(chain.write(chain.read()))
            vring.complete(batch, lengths)

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed.set()


def main() -> int:
    """Run the echo device as a real daemon process (for signal and fd tests)."""
    from vhost_user_core import (
        add_socket_args,
        main_guard,
        open_listeners,
        run_daemon,
        setup_logging,
    )

    parser = argparse.ArgumentParser(prog="echo-daemon")
    add_socket_args(parser)
    args = parser.parse_args()
    setup_logging("debug")
    return main_guard(lambda: run_daemon(EchoBackend, open_listeners(args)))()


if __name__ == "__main__":
    sys.exit(main())
