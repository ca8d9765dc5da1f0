"""A Wayland client's round trip through our cross-domain context to a real compositor:
the frontend plays the guest proxy (wayland-proxy-virtwl's part) against Debian's
headless weston 14. QEMU 10.0 has no vhost-user shared memory and offers the guest
neither RESOURCE_BLOB nor CONTEXT_INIT, so no real guest can run this (README)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from crossdomain_rig import (
    ID_BLOB,
    OK_MAP_INFO,
    OK_NODATA,
    OUTPUT_H,
    OUTPUT_W,
    R8,
    RECEIVE,
    Proxy,
    WlDecoder,
    WlEvent,
    cross_domain_gpu,
    headless_weston,
    setup_proxy,
    wl_msg,
)

# object ids the client chooses, in the order it uses them (1 is wl_display; the
# server takes each new id only as the next one, no gaps)
REGISTRY, SYNC1, COMPOSITOR, SHM, WM_BASE, OUTPUT, CAPTURE = range(2, 9)
POOL, BUFFER, SURFACE, XDG_SURFACE, TOPLEVEL, SYNC2 = range(9, 15)
SOURCE, POOL2, BUFFER2 = range(15, 18)
WL_SHM_XRGB8888 = 1
QUADRANTS = (0x00FF0000, 0x0000FF00, 0x000000FF, 0x00FFFF00)  # red, green, blue, yellow


@pytest.fixture(scope="module")
def weston(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with headless_weston(tmp_path_factory.mktemp("weston")) as path:
        yield path


class Client:
    """The guest proxy's Wayland client: bytes out by SEND, events in by POLL."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.decoder = WlDecoder()
        self.events: list[WlEvent] = []
        self.fds: list[tuple[int, int, int]] = []

    def send(self, *messages: bytes, idents: list[tuple[int, int, int]] = ()) -> None:  # type: ignore[assignment]
        assert self.proxy.send(b"".join(messages), idents) == OK_NODATA

    def until(self, obj: int, opcode: int, timeout: float = 10.0) -> WlEvent:
        """POLL until the event arrives; every event on the way is kept."""
        while True:
            for event in self.events:
                if (event.obj, event.opcode) == (obj, opcode):
                    self.events.remove(event)
                    return event
                if event.obj == 1 and event.opcode == 0:  # wl_display.error
                    text, _ = event.string(8)
                    raise AssertionError(f"protocol error on {event.uint(0)}: {text}")
            got = self.proxy.poll(timeout)
            assert got.cmd == RECEIVE
            self.fds += got.idents
            self.events += self.decoder.feed(got.data)

    def roundtrip(self, callback: int) -> None:
        """wl_display.sync: everything sent before it has been handled without error."""
        self.send(wl_msg(1, 0, callback))
        self.until(callback, 0)
        assert not [e for e in self.events if (e.obj, e.opcode) == (1, 0)]


def globals_of(client: Client) -> dict[str, tuple[int, int]]:
    found = {}
    for event in [e for e in client.events if (e.obj, e.opcode) == (REGISTRY, 0)]:
        name = event.uint(0)
        interface, offset = event.string(4)
        found[interface] = (name, struct.unpack_from("<I", event.body, offset)[0])
        client.events.remove(event)
    return found


def bind(
    client: Client, found: dict[str, tuple[int, int]], interface: str, new_id: int, version: int = 1
) -> bytes:
    name, offered = found[interface]
    return wl_msg(REGISTRY, 0, name, interface, min(version, offered), new_id)


def host_buffer(proxy: Proxy, rid: int, size: int, offset: int) -> memoryview:
    """A wl_shm pool as the proxy makes one: image requirements for an R8 line of the
    pool's size, a HOST3D blob of it, mapped into the host-visible region (SHMEM_MAP);
    the pages as the guest sees them."""
    guest = proxy.guest
    stride, got_size, blob_id = proxy.image_requirements(size, 1, R8)
    assert (stride, got_size) == (size, size) and blob_id % 2 == 0
    assert guest.host_blob(proxy.ctx, rid, blob_id, size) == OK_NODATA
    status, map_info = guest.map_blob(rid, offset)
    assert status == OK_MAP_INFO and map_info & 0x30 == 0x30  # cached, read-write
    return guest.shmem.view(1, offset, size)


def test_registry_shm_commit_and_capture(tmp_path: Path, weston: Path) -> None:
    with cross_domain_gpu(tmp_path, str(weston)) as guest:
        proxy = setup_proxy(guest)
        client = Client(proxy)

        # the registry, read back through POLL / RECEIVE
        client.send(wl_msg(1, 1, REGISTRY), wl_msg(1, 0, SYNC1))
        client.until(SYNC1, 0)
        found = globals_of(client)
        assert {"wl_compositor", "wl_shm", "xdg_wm_base", "wl_output"} <= found.keys()

        client.send(
            bind(client, found, "wl_compositor", COMPOSITOR, 4),
            bind(client, found, "wl_shm", SHM),
            bind(client, found, "xdg_wm_base", WM_BASE),
            bind(client, found, "wl_output", OUTPUT),
            bind(client, found, "weston_capture_v1", CAPTURE),
        )

        # a wl_shm buffer in a host blob, filled through the SHMEM mapping
        size = OUTPUT_W * OUTPUT_H * 4
        pixels = host_buffer(proxy, 3, size, 0)
        assert guest.shmem.requests[-1][0] == 9  # SHMEM_MAP, fd attached
        for y in range(OUTPUT_H):
            row = b"".join(
                struct.pack("<I", QUADRANTS[(y >= OUTPUT_H // 2) * 2 + (x >= OUTPUT_W // 2)])
                for x in range(OUTPUT_W)
            )
            pixels[y * OUTPUT_W * 4 : (y + 1) * OUTPUT_W * 4] = row
        client.send(
            wl_msg(SHM, 0, POOL, size),  # create_pool(new_id, fd, size): the fd is id 3
            wl_msg(POOL, 0, BUFFER, 0, OUTPUT_W, OUTPUT_H, OUTPUT_W * 4, WL_SHM_XRGB8888),
            wl_msg(COMPOSITOR, 0, SURFACE),
            wl_msg(WM_BASE, 2, XDG_SURFACE, SURFACE),
            wl_msg(XDG_SURFACE, 1, TOPLEVEL),
            wl_msg(SURFACE, 6),  # the first commit, no buffer: asks for a configure
            idents=[(3, ID_BLOB, size)],
        )
        serial = client.until(XDG_SURFACE, 0).uint(0)
        client.send(
            wl_msg(XDG_SURFACE, 4, serial),
            wl_msg(SURFACE, 1, BUFFER, 0, 0),
            wl_msg(SURFACE, 2, 0, 0, OUTPUT_W, OUTPUT_H),
            wl_msg(SURFACE, 6),
        )
        client.roundtrip(SYNC2)  # attached and committed, no protocol error

        # weston's own capture of its framebuffer, into a second host blob
        # full_framebuffer (1): what the pixman renderer offers (framebuffer, 0, never comes)
        client.send(wl_msg(CAPTURE, 1, OUTPUT, 1, SOURCE))
        fmt = client.until(SOURCE, 0).uint(0)
        size_event = client.until(SOURCE, 1)
        width, height = size_event.uint(0), size_event.uint(1)
        assert (width, height) == (OUTPUT_W, OUTPUT_H) and fmt == 0x34325258  # XRGB8888
        shot = host_buffer(proxy, 4, width * height * 4, 1 << 20)
        client.send(
            wl_msg(SHM, 0, POOL2, width * height * 4),
            wl_msg(POOL2, 0, BUFFER2, 0, width, height, width * 4, WL_SHM_XRGB8888),
            wl_msg(SOURCE, 1, BUFFER2),
            idents=[(4, ID_BLOB, width * height * 4)],
        )
        client.until(SOURCE, 2)  # complete
        words = struct.unpack(f"<{width * height}I", shot)
        for (x, y), colour in zip(
            ((5, 5), (OUTPUT_W - 5, 5), (5, OUTPUT_H - 5), (OUTPUT_W - 5, OUTPUT_H - 5)),
            QUADRANTS,
            strict=True,
        ):
            assert words[y * width + x] & 0xFFFFFF == colour, (x, y, hex(words[y * width + x]))

        # and the blobs leave the host-visible region again
        assert guest.unmap_blob(3) == OK_NODATA
        assert guest.shmem.wait_requests(3)[-1][0] == 10  # SHMEM_UNMAP
        assert (1, 0) not in guest.shmem.maps
