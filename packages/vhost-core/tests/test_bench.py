"""The benchmarks' shared pieces: percentiles, and reaping used entries from a real
daemon process (the echo device) through the frontend."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.bench import (
    OURS,
    DaemonCommand,
    Ratios,
    add_daemon_arg,
    chosen_daemons,
    daemon_process,
    each_daemon,
    find_sockets,
    idle_report,
    listening,
    parse_daemon,
    percentiles,
    placed_rounds,
    placements,
    reap_used,
    rounds,
    started,
)

ECHO = [sys.executable, str(Path(__file__).with_name("echo_backend.py"))]


def test_percentiles_of_a_hundred_samples() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # unsorted on purpose
    assert percentiles(samples) == (50.5, 100.0)


def test_percentiles_of_few_samples() -> None:
    assert percentiles([3.0]) == (3.0, 3.0)
    assert percentiles([2.0, 1.0, 4.0]) == (2.0, 4.0)
    # 100 slow samples in 10 000: 99 % lie below the first of them (index 9 900)
    assert percentiles([1.0] * 9900 + [5.0] * 100) == (1.0, 5.0)
    with pytest.raises(ValueError):
        percentiles([])


def test_reap_used_from_a_daemon_process(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    with (
        daemon_process([*ECHO, "-s", str(base)], [f"{base}0"]) as proc,
        Frontend.connect(f"{base}0") as frontend,
    ):
        queue, _ = frontend.start_device(2, 64)
        assert frontend.ram is not None
        ram = frontend.ram
        pairs = []
        for i in range(16):
            src, dst = ram.alloc(4), ram.alloc(4)
            ram.memory.write(src, i.to_bytes(4, "little"))
            pairs.append((src, dst))
        for _ in range(3):  # rounds, as a benchmark posts them
            for src, dst in pairs:
                queue.driver.add([(src, 4, False), (dst, 4, True)])
            queue.publish()
            reap_used(queue, len(pairs))
            assert queue.driver.get_used() == []  # all taken, none left over
        for i, (_, dst) in enumerate(pairs):
            assert ram.memory.read(dst, 4) == i.to_bytes(4, "little")
        with pytest.raises(TimeoutError, match="did not answer in 0.2 s"):
            reap_used(queue, 1, timeout=0.2)  # nothing posted: nothing comes
        report = idle_report(proc.pid, seconds=0.1)
        assert report.startswith("daemon CPU while idle for 0.1 s: ")
        assert report.endswith(" MiB")
    assert proc.returncode == 0  # SIGTERMed, exited cleanly


# Side by side: the plumbing, not the timing.


def test_daemon_flag_is_repeatable_and_ours_comes_first() -> None:
    parser = argparse.ArgumentParser()
    add_daemon_arg(parser)
    args = parser.parse_args(
        ["--daemon", "rust=/bin/rng --socket-path {sock}", "--daemon", "c= x -s {sock}"]
    )
    daemons = chosen_daemons(args.daemon, "py -m ours -s {sock}")
    assert [d.label for d in daemons] == [OURS, "rust", "c"]
    assert daemons[0].argv(sock="/t/a b.sock") == ["py", "-m", "ours", "-s", "/t/a b.sock"]
    assert daemons[1].argv(sock="/t/s", uds="unused") == ["/bin/rng", "--socket-path", "/t/s"]
    assert chosen_daemons(parser.parse_args([]).daemon, "ours {sock}") == [
        DaemonCommand(OURS, "ours {sock}")
    ]


def test_daemon_flag_labelled_ours_replaces_our_command() -> None:
    given = [parse_daemon("x=a {sock}"), parse_daemon("ours=other-build {sock}")]
    daemons = chosen_daemons(given, "default {sock}")
    assert [(d.label, d.template) for d in daemons] == [
        (OURS, "other-build {sock}"),
        ("x", "a {sock}"),
    ]


@pytest.mark.parametrize("text", ["no-label", "=cmd {sock}", "label=", " = x"])
def test_daemon_flag_without_label_or_command_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="LABEL="):
        parse_daemon(text)


def test_daemon_labels_must_differ_and_fields_must_be_known() -> None:
    with pytest.raises(ValueError, match="given twice"):
        chosen_daemons([parse_daemon("a=x"), parse_daemon("a=y")], "o")
    with pytest.raises(ValueError, match=r"unknown field 'port' \(this bench fills \{sock\}\)"):
        parse_daemon("a=x -p {port}").argv(sock="s")


def test_rounds_alternate_daemons_within_each_case() -> None:
    assert list(rounds(["64 B", "4 KiB"], ["ours", "rust"])) == [
        ("64 B", "ours"),
        ("64 B", "rust"),
        ("4 KiB", "ours"),
        ("4 KiB", "rust"),
    ]


def test_ratios_are_to_ours_for_the_same_case() -> None:
    ratio = Ratios()
    assert ratio("depth 1", OURS, 200.0) == "1.00×"
    assert ratio("depth 256", OURS, 1000.0) == "1.00×"
    assert ratio("depth 1", "rust", 300.0) == "1.50×"
    assert ratio("depth 256", "rust", 500.0) == "0.50×"
    assert ratio("depth 1", "rust", None) == "—"  # the other daemon failed this one
    assert ratio("other", "rust", 1.0) == "—"  # ours was not measured: no ratio
    assert ratio("zero", OURS, 0.0) == "—"
    assert ratio("zero", "rust", 1.0) == "—"


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(1)
    return sock


def test_a_socket_counts_as_listening_only_once_it_listens(tmp_path: Path) -> None:
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(str(tmp_path / "bound"))
    with bound, _listen(tmp_path / "listening"):
        assert not listening(tmp_path / "bound")
        assert listening(tmp_path / "listening")
        assert not listening(tmp_path / "absent")


def test_find_sockets_takes_the_path_or_upstreams_path_with_0(tmp_path: Path) -> None:
    with _listen(tmp_path / "plain.sock"):
        assert find_sockets(tmp_path / "plain.sock") == [str(tmp_path / "plain.sock")]
    with _listen(tmp_path / "up.sock0"):
        assert find_sockets(tmp_path / "up.sock") == [str(tmp_path / "up.sock0")]
    with _listen(tmp_path / "n0"), _listen(tmp_path / "n1"):
        assert find_sockets(tmp_path / "n", count=2) == [str(tmp_path / "n0"), str(tmp_path / "n1")]
        with pytest.raises(TimeoutError, match="nothing listens"):
            find_sockets(tmp_path / "n", count=3, timeout=0.1)


def test_a_daemon_that_exits_before_listening_fails_at_once(tmp_path: Path) -> None:
    gone = DaemonCommand("gone", f"{sys.executable} -c pass {{sock}}")
    with pytest.raises(RuntimeError, match="exited 0 before listening"):
        with started(gone, tmp_path / "gone.sock"):
            pass


def test_side_by_side_daemons_run_at_once_and_serve(tmp_path: Path) -> None:
    """Two daemons from templates (the echo device twice, one of them under another
    label), each found at its own socket and serving, then SIGTERMed."""
    command = " ".join(ECHO) + " -s {sock}"
    daemons = chosen_daemons([parse_daemon(f"other={command}")], command)
    with ExitStack() as stack:
        running = each_daemon(daemons, tmp_path / "echo.sock", stack, extra=["-c", "1"])
        assert [(r.label, r.socket) for r in running] == [
            (OURS, f"{tmp_path}/echo.sock.ours0"),
            ("other", f"{tmp_path}/echo.sock.other0"),
        ]
        assert running[0].process.args[-2:] == ["-c", "1"]  # `extra` is ours only
        assert running[1].process.args[-2:] == ["-s", f"{tmp_path}/echo.sock.other"]
        for run in running:
            with Frontend.connect(run.socket) as frontend:
                queue, _ = frontend.start_device(2, 64)
                assert frontend.ram is not None
                src, dst = frontend.ram.alloc(4), frontend.ram.alloc(4)
                frontend.ram.memory.write(src, b"ping")
                queue.driver.add([(src, 4, False), (dst, 4, True)])
                queue.publish()
                reap_used(queue, 1)
                assert frontend.ram.memory.read(dst, 4) == b"ping"
    assert [r.process.returncode for r in running] == [0, 0]


def _affinity_of_every_thread(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{pid}/task")}


def test_placements_pin_the_bench_and_every_thread_of_the_daemon() -> None:
    """One CPU, then two CPUs (when this process may use two), each pinning this
    process and all threads of a daemon-like child that started its threads first;
    unpinned gives both back every CPU."""
    allowed = os.sched_getaffinity(0)
    cpus = sorted(allowed)
    chosen = placements()
    assert [p.name for p in chosen] == (["one CPU", "two CPUs"] if len(cpus) > 1 else ["one CPU"])
    code = (
        "import threading, time\n"
        "for _ in range(2): threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "print(flush=True)\n"
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # its threads are running
        assert len(os.listdir(f"/proc/{child.pid}/task")) == 3
        for placement in chosen:
            placement.apply(child.pid)
            assert os.sched_getaffinity(0) == {placement.bench_cpu}
            assert _affinity_of_every_thread(child.pid) == {frozenset({placement.daemon_cpu})}
        (unpinned,) = placements("unpinned")
        unpinned.apply(child.pid)
        assert os.sched_getaffinity(0) == allowed
        assert _affinity_of_every_thread(child.pid) == {frozenset(allowed)}
    finally:
        child.kill()
        child.wait()
        os.sched_setaffinity(0, allowed)
    try:
        with pytest.raises(RuntimeError, match="has exited"):
            chosen[0].apply(child.pid)  # reaped: a daemon that died says so
    finally:
        os.sched_setaffinity(0, allowed)


def test_placed_rounds_repeat_the_rounds_per_placement() -> None:
    allowed = os.sched_getaffinity(0)
    try:
        seen = [
            (where.name, case, daemon)
            for where, case, daemon in placed_rounds(
                [1, 64], ["ours", "rust"], lambda _: os.getpid(), "one"
            )
        ]
    finally:
        os.sched_setaffinity(0, allowed)
    assert seen == [
        ("one CPU", 1, "ours"),
        ("one CPU", 1, "rust"),
        ("one CPU", 64, "ours"),
        ("one CPU", 64, "rust"),
    ]
    with pytest.raises(ValueError, match="unknown"):
        placements("nowhere")


def test_sliced_rounds_reverse_the_daemons_every_other_slice() -> None:
    allowed = os.sched_getaffinity(0)
    try:
        seen = [
            (case, daemon)
            for _, case, daemon in placed_rounds(
                [1], ["ours", "rust"], lambda _: os.getpid(), "one", slices=3
            )
        ]
    finally:
        os.sched_setaffinity(0, allowed)
    assert seen == [(1, "ours"), (1, "rust"), (1, "rust"), (1, "ours"), (1, "ours"), (1, "rust")]
