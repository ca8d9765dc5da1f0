"""The guest side of the vsock tests: build guest/vsock_test.c and read what it prints.

The test guest is a busybox initramfs with nothing that speaks AF_VSOCK, so the vsock
tests copy in `vsock-test`, a small static C program (see the comment at the top of
guest/vsock_test.c for its subcommands). Pass ``extra_files=guest_files()`` to
`Guest.run` and run it as ``/vsock-test send 2 1234 1048576`` and so on from the guest
script (`GUEST_PATH`); then `parse_results` on the console text gives one `VsockResult`
per line it printed, in order.

Each result line is the subcommand's name in capitals then ``key=value`` fields
separated by spaces, no value holding a space: ``SEND bytes=1048576 crc=1c291ca3 ms=52
reply=DONE_1048576_1c291ca3_``. A failure adds ``error=<step>:<ERRNO>:<strerror>``.

`prng_bytes` reproduces the program's data (xorshift64) for a host side that wants
to check more than the CRC.
"""

from __future__ import annotations

import builtins
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from vhost_user_core.testing.guest_image import (
    GuestImage,
    collect_modules,
    module_dir,
    unpacked_kernel,
)
from vhost_user_core.testing.guest_program import build_static

SOURCE = Path(__file__).resolve().parent.parent / "guest" / "vsock_test.c"
#: Where `Guest.run(extra_files={GUEST_NAME: ...})` puts the program in the guest.
GUEST_NAME = "vsock-test"
GUEST_PATH = "/" + GUEST_NAME
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra")

#: The first words of the lines vsock-test prints (USAGE: no or an unknown subcommand).
KINDS = frozenset(
    {
        "LISTENING",
        "SEND",
        "RECV",
        "MANY",
        "CONNECT",
        "SEQ",
        "SEQRECV",
        "ECHO",
        "SHUTRD",
        "SHUTPEER",
        "USAGE",
    }
)
_LINE = re.compile(
    r"(?:^|\s)(?P<kind>[A-Z][A-Z0-9_]*)(?P<fields>(?:[ \t]+[a-z_][a-z0-9_]*=\S*)+)\s*$"
)

#: The program's xorshift64 seed and the bound of `seq`'s message sizes.
PRNG_SEED = 0x9E3779B97F4A7C15
SEQ_MAX_MESSAGE = 32768
_MASK64 = (1 << 64) - 1


@functools.lru_cache(maxsize=1)
def vsock_test_binary() -> bytes:
    """The static guest program, built on first use and then taken from the cache."""
    return build_static(SOURCE, GUEST_NAME, cflags=CFLAGS)


def guest_files() -> dict[str, bytes]:
    """The `extra_files` argument of `Guest.run` that installs /vsock-test."""
    return {GUEST_NAME: vsock_test_binary()}


@dataclass
class VsockResult:
    """One line vsock-test printed: ``SEND bytes=10 crc=...`` is kind "SEND" and
    fields {"bytes": "10", "crc": ...}."""

    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return "error" not in self.fields

    @property
    def error(self) -> str | None:
        """``step:ERRNO:strerror`` (``step:detail`` when no errno is involved)."""
        return self.fields.get("error")

    @property
    def errno_name(self) -> str | None:
        """The errno's name in `error` (ECONNRESET), if it has one."""
        parts = (self.error or "").split(":")
        return next((p for p in parts if re.fullmatch(r"E[A-Z0-9]+", p)), None)

    def __getitem__(self, key: str) -> str:
        try:
            return self.fields[key]
        except KeyError:
            raise KeyError(f"{key!r} not in {self.kind} {self.fields}") from None

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def peer(self) -> tuple[builtins.int, builtins.int]:
        """RECV's ``peer=CID:PORT``."""
        cid, port = self["peer"].split(":")
        return builtins.int(cid), builtins.int(port)

    def crc(self, key: str = "crc") -> builtins.int:
        """A CRC-32 field (8 hex digits), comparable with zlib.crc32."""
        return builtins.int(self[key], 16)

    def int(self, key: str) -> builtins.int:
        return builtins.int(self[key])


def _parse_line(line: str) -> VsockResult | None:
    found = _LINE.search(line)
    if found is None or found["kind"] not in KINDS:
        return None
    pairs = (word.split("=", 1) for word in found["fields"].split())
    return VsockResult(found["kind"], {key: value for key, value in pairs})


def parse_results(console_text: str) -> list[VsockResult]:
    """Every vsock-test line in `console_text` (a guest's console or script output), in
    order. Carriage returns and lines that are not results (kernel messages, shell
    output) are skipped; a result line may carry console noise before it."""
    results = []
    for line in console_text.replace("\r", "\n").split("\n"):
        result = _parse_line(line)
        if result is not None:
            results.append(result)
    return results


def by_kind(results: list[VsockResult], kind: str) -> list[VsockResult]:
    """The results of one kind (``"SEND"``), in the order the guest printed them."""
    return [r for r in results if r.kind == kind]


def parse_result(console_text: str, kind: str) -> VsockResult:
    """The one `kind` line in `console_text`; ValueError if there is none or several."""
    found = by_kind(parse_results(console_text), kind)
    if len(found) != 1:
        raise ValueError(f"expected one {kind} line, found {len(found)}: {console_text!r}")
    return found[0]


class Prng:
    """vsock-test's data: xorshift64 (13, 7, 17), each output as 8 little-endian bytes;
    a buffer whose size is not a multiple of 8 takes the first bytes of one more
    output."""

    def __init__(self, seed: int = PRNG_SEED) -> None:
        self.state = seed

    def next(self) -> int:
        x = self.state
        x ^= (x << 13) & _MASK64
        x ^= x >> 7
        x ^= (x << 17) & _MASK64
        self.state = x
        return x

    def fill(self, size: int) -> bytes:
        words = [self.next().to_bytes(8, "little") for _ in range((size + 7) // 8)]
        return b"".join(words)[:size]


def prng_bytes(nbytes: int) -> bytes:
    """What ``vsock-test send CID PORT nbytes`` writes."""
    prng, chunk = Prng(), 64 * 1024
    return b"".join(prng.fill(min(chunk, nbytes - at)) for at in range(0, nbytes, chunk))


def seq_messages(count: int) -> list[bytes]:
    """The messages ``vsock-test seq CID PORT count`` sends, in order."""
    prng = Prng()
    return [prng.fill(1 + prng.next() % SEQ_MAX_MESSAGE) for _ in range(count)]


def net_files(image: GuestImage) -> dict[str, bytes]:
    """virtio-net and the modules it needs, from the image's own kernel package, for
    `Guest.run(extra_files=...)` (the shared image loads no network driver), in
    load order; `net_setup` loads them."""
    assert image.directory is not None
    root = module_dir(unpacked_kernel(image.directory, image.package), image.kernel_version)
    return {f"{name}.ko": data for name, data in collect_modules(root, ("virtio_net",))}


def net_setup(files: dict[str, bytes]) -> str:
    """The guest script lines that load `net_files` and bring up eth0 as QEMU's
    `-netdev user` expects it (10.0.2.15, the host at 10.0.2.2)."""
    insmods = "".join(f"insmod /{name}\n" for name in files)
    return insmods + (
        "ip link set lo up\n"
        "ip addr add 10.0.2.15/24 dev eth0\n"
        "ip link set eth0 up\n"
        "ip route add default via 10.0.2.2\n"
    )
