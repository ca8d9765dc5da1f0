"""The guest's vsock-test program (guest/vsock_test.c) and its build, host side only:
it compiles warning-free and static, the build cache works, the data and CRC it reports
are the ones Python computes, and its output parses out of a noisy console."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from guest_vsock import (
    CFLAGS,
    GUEST_NAME,
    GUEST_PATH,
    SOURCE,
    by_kind,
    guest_files,
    parse_result,
    parse_results,
    prng_bytes,
    seq_messages,
    vsock_test_binary,
)

from vhost_user_core.testing import guest_program
from vhost_user_core.testing.guest_program import (
    DEFAULT_CFLAGS,
    GuestProgramBuildError,
    build_static,
    build_static_path,
    compile_program,
)


def is_static_elf(data: bytes) -> bool:
    """An ELF executable with no PT_INTERP program header: the busybox guest can run it."""
    if data[:4] != b"\x7fELF":
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types


def run_binary(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    binary = tmp_path / "program"
    binary.write_bytes(data)
    binary.chmod(0o755)
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_compiles_static_and_warning_free(tmp_path: Path) -> None:
    binary = tmp_path / GUEST_NAME
    assert compile_program(SOURCE, binary, cflags=(*CFLAGS, "-Werror")) == ""
    assert is_static_elf(binary.read_bytes())


def test_binary_comes_from_the_shared_cache() -> None:
    data = vsock_test_binary()
    assert is_static_elf(data)
    cached = build_static_path(SOURCE, GUEST_NAME, cflags=CFLAGS)
    assert cached.parent == guest_program.default_cache_dir()
    assert cached.name.startswith(f"{GUEST_NAME}-") and cached.read_bytes() == data
    assert guest_files() == {GUEST_NAME: data}
    assert GUEST_PATH == "/vsock-test"


def test_cache_is_reused_and_keyed_by_preprocessed_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[Path] = []
    real_compile = guest_program.compile_program

    def counting_compile(source: Path, output: Path, **kwargs: Any) -> str:
        compiled.append(output)
        return real_compile(source, output, **kwargs)

    monkeypatch.setattr(guest_program, "compile_program", counting_compile)
    include, cache = tmp_path / "include", tmp_path / "cache"
    include.mkdir()
    header = include / "greeting.h"
    header.write_text('#define GREETING "hello"\n')
    source = tmp_path / "hello.c"
    source.write_text(
        '#include <stdio.h>\n#include "greeting.h"\nint main(void) { puts(GREETING); }\n'
    )
    flags = (*DEFAULT_CFLAGS, f"-I{include}")

    first = build_static_path(source, "hello", cflags=flags, cache_dir=cache)
    assert len(compiled) == 1
    mtime = first.stat().st_mtime_ns
    data = build_static(source, "hello", cflags=flags, cache_dir=cache)
    assert len(compiled) == 1, "the second build compiled again"
    assert first.stat().st_mtime_ns == mtime and data == first.read_bytes()
    # Built through a temporary file that is renamed: nothing else is left behind.
    assert [p.name for p in cache.iterdir()] == [first.name]
    assert run_binary(tmp_path, data).stdout == "hello\n"

    # A header change is a different program, and so are different flags.
    header.write_text('#define GREETING "bonjour"\n')
    second = build_static_path(source, "hello", cflags=flags, cache_dir=cache)
    assert len(compiled) == 2 and second != first
    assert run_binary(tmp_path, second.read_bytes()).stdout == "bonjour\n"
    third = build_static_path(source, "hello", cflags=(*flags, "-O0"), cache_dir=cache)
    assert len(compiled) == 3 and third not in (first, second)
    # -static is always there, even when the flags leave it out.
    fourth = build_static_path(source, "hello", cflags=("-O1", f"-I{include}"), cache_dir=cache)
    assert is_static_elf(fourth.read_bytes())


def test_compile_error_is_reported_with_the_compilers_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return missing_variable; }\n")
    cache = tmp_path / "cache"
    with pytest.raises(GuestProgramBuildError) as caught:
        build_static(bad, "bad", cache_dir=cache)
    message = str(caught.value)
    assert "missing_variable" in message and "error" in message
    assert "gcc libc6-dev linux-libc-dev" in message and str(bad) in message
    assert list(cache.iterdir()) == []  # no half-built binary, no temporary file

    missing_header = tmp_path / "header.c"
    missing_header.write_text("#include <no/such/header.h>\nint main(void) { return 0; }\n")
    with pytest.raises(GuestProgramBuildError, match="linux-libc-dev(.|\n)*no/such/header.h"):
        build_static(missing_header, "header", cache_dir=cache)

    with pytest.raises(ValueError, match="program name"):
        build_static(bad, "../escape", cache_dir=cache)


def test_missing_gcc_names_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GuestProgramBuildError, match="gcc libc6-dev linux-libc-dev"):
        build_static(SOURCE, GUEST_NAME, cache_dir=tmp_path)


HARNESS = r"""
#define main vsock_test_main
#include "{source}"
#undef main

/* What `send` computes for NBYTES, then what `seq` sends, from the program's own code. */
int main(int argc, char **argv)
{{
	static unsigned char buf[CHUNK];
	uint64_t left = strtoull(argv[1], NULL, 0);
	unsigned count = (unsigned)strtoul(argv[2], NULL, 0);
	uint32_t crc = 0;

	(void)argc;
	crc32_init();
	while (left) {{
		size_t len = left < CHUNK ? (size_t)left : CHUNK;

		prng_fill(buf, len);
		crc = crc32_update(crc, buf, len);
		left -= len;
	}}
	printf("%08x\n", crc);
	prng_state = 0x9e3779b97f4a7c15ull;
	for (unsigned i = 0; i < count; i++) {{
		size_t size = 1 + (size_t)(prng_next() % SEQ_MAX_MESSAGE);

		prng_fill(buf, size);
		printf("%zu %08x\n", size, crc32_update(0, buf, size));
	}}
	return 0;
}}
"""


def test_data_and_crc_are_what_python_computes(tmp_path: Path) -> None:
    harness = tmp_path / "harness.c"
    harness.write_text(HARNESS.format(source=SOURCE))
    data = build_static(harness, "harness", cache_dir=tmp_path / "cache")
    nbytes, count = 3 * 65536 + 13, 20
    done = run_binary(tmp_path, data, str(nbytes), str(count))
    assert done.returncode == 0, done.stderr
    crc, *messages = done.stdout.splitlines()
    assert int(crc, 16) == zlib.crc32(prng_bytes(nbytes))
    assert len(prng_bytes(nbytes)) == nbytes
    expected = [(len(m), zlib.crc32(m)) for m in seq_messages(count)]
    got = [(int(size), int(c, 16)) for size, c in (line.split() for line in messages)]
    assert got == expected
    assert all(1 <= size <= 32768 for size, _ in got) and len({s for s, _ in got}) > 1


@pytest.mark.parametrize(
    ("args", "kind", "reason"),
    [
        ((), "USAGE", "no_subcommand"),
        (("frobnicate",), "USAGE", "unknown_subcommand"),
        (("send", "2", "1234"), "SEND", "send_CID_PORT_NBYTES"),
        (("send", "2", "x", "10"), "SEND", "send_CID_PORT_NBYTES"),
        (("recv", "-1"), "RECV", "recv_PORT"),
        (("many", "2", "1234", "0"), "MANY", "many_CID_PORT_COUNT"),
        (("connect", "2"), "CONNECT", "connect_CID_PORT"),
        (("connect", "2", "4294967296"), "CONNECT", "connect_CID_PORT"),
        (("seq", "2", "1234"), "SEQ", "seq_CID_PORT_COUNT"),
        (("seqrecv", "1234"), "SEQRECV", "seqrecv_PORT_COUNT"),
        (("echo",), "ECHO", "echo_PORT"),
    ],
)
def test_usage_errors(tmp_path: Path, args: tuple[str, ...], kind: str, reason: str) -> None:
    done = run_binary(tmp_path, vsock_test_binary(), *args)
    assert done.returncode == 1
    result = parse_result(done.stdout, kind)
    assert result.error == f"usage:{reason}" and not result.ok
    assert done.stdout.count("\n") == 1
    assert "usage:" in done.stderr and "seqrecv PORT COUNT" in done.stderr


SAMPLE_CONSOLE = "\r\n".join(
    [
        "[    2.913] NET: Registered PF_VSOCK protocol family",
        "VHOST-TEST-START",
        "LISTENING port=5000",
        "[    3.100] virtio_vsock: something happened",
        "SEND bytes=1048576 crc=1c291ca3 ms=57 reply=DONE_1048576_1c291ca3_",
        "SEND bytes=65536 crc=00000000 error=connect:ECONNRESET:Connection_reset_by_peer",
        "\rRECV bytes=10 crc=0badf00d ms=0 peer=2:1025",
        "MANY ok=64 of=64",
        "CONNECT result=ECONNRESET\r",
        "[    4.0] random: crng init done CONNECT result=ok",
        "SEQ ok=100 of=100 bytes=1638400",
        "SEQRECV ok=10 sizes_crc=deadbeef bytes=1234",
        "NOTOURS key=value",
        "SEND but not key value pairs",
        "sh: /vsock-test: not found",
        "VHOST-TEST-EXIT=0",
        "",
    ]
)


def test_parse_results_skips_console_noise() -> None:
    results = parse_results(SAMPLE_CONSOLE)
    assert [r.kind for r in results] == [
        "LISTENING",
        "SEND",
        "SEND",
        "RECV",
        "MANY",
        "CONNECT",
        "CONNECT",
        "SEQ",
        "SEQRECV",
    ]
    listening, sent, failed, received, many, refused, connected, seq, seqrecv = results
    assert listening.int("port") == 5000
    assert sent.ok and sent.int("bytes") == 1 << 20 and sent.crc() == 0x1C291CA3
    assert sent.int("ms") == 57 and sent["reply"] == "DONE_1048576_1c291ca3_"
    assert not failed.ok and failed.errno_name == "ECONNRESET"
    assert failed.error == "connect:ECONNRESET:Connection_reset_by_peer"
    assert received.peer() == (2, 1025) and received.crc() == 0x0BADF00D
    assert (many.int("ok"), many.int("of")) == (64, 64)
    assert refused["result"] == "ECONNRESET" and connected["result"] == "ok"
    assert seq.fields == {"ok": "100", "of": "100", "bytes": "1638400"}
    assert seqrecv.crc("sizes_crc") == 0xDEADBEEF
    assert by_kind(results, "SEND") == [sent, failed]
    assert parse_result(SAMPLE_CONSOLE, "MANY") == many
    with pytest.raises(ValueError, match="expected one SEND"):
        parse_result(SAMPLE_CONSOLE, "SEND")
    with pytest.raises(KeyError, match="'nope' not in SEQ"):
        seq["nope"]
    assert parse_results("") == []
