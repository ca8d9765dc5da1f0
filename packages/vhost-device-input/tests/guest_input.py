"""Runs inside the guest (the host's Python and python-evdev over the 9p root): finds
the virtio-input nodes by name, prints what the guest's evdev learnt about them (the
EVIOCG* ioctls), turns Caps Lock's LED on, then prints the events that arrive until
each device has had `frames` SYN_REPORTs. One `key: value` line per fact."""

from __future__ import annotations

import select
import sys
import time

import evdev
from evdev import ecodes as e


def main(frames: int) -> int:
    found = {}
    deadline = time.monotonic() + 30
    while len(found) < 2 and time.monotonic() < deadline:
        for path in evdev.list_devices():
            dev = evdev.InputDevice(path)
            if dev.name.startswith("vhost-device-input sim "):
                found.setdefault(dev.name.split()[-1], dev)
        time.sleep(0.2)
    for kind, dev in sorted(found.items()):
        caps = dev.capabilities(absinfo=False)
        print(f"{kind}-name: {dev.name}")
        print(f"{kind}-uniq: {dev.uniq}")
        i = dev.info
        print(f"{kind}-ids: {i.bustype:#x} {i.vendor:#x} {i.product:#x} {i.version:#x}")
        print(f"{kind}-types: {sorted(t for t in caps if t != e.EV_SYN)}")
        print(f"{kind}-props: {sorted(dev.input_props())}")
        for t in (e.EV_KEY, e.EV_REL, e.EV_ABS, e.EV_LED):
            print(f"{kind}-codes-{t}: {len(caps.get(t, []))} {sorted(caps.get(t, []))[:4]}")
        for axis in caps.get(e.EV_ABS, []):
            a = dev.absinfo(axis)
            print(f"{kind}-abs-{axis}: {a.min} {a.max} {a.fuzz} {a.flat} {a.resolution}")
    sys.stdout.flush()
    found["keyboard"].set_led(e.LED_CAPSL, 1)  # the host answers with the events
    seen = {kind: 0 for kind in found}
    events = {kind: [] for kind in found}
    by_fd = {dev.fd: kind for kind, dev in found.items()}
    deadline = time.monotonic() + 60
    while min(seen.values()) < frames and time.monotonic() < deadline:
        ready, _, _ = select.select(list(by_fd), [], [], 1)
        for fd in ready:
            kind = by_fd[fd]
            for ev in found[kind].read():
                events[kind].append(f"{ev.type}/{ev.code}/{ev.value}")
                if ev.type == e.EV_SYN and ev.code == e.SYN_REPORT:
                    seen[kind] += 1
    for kind, got in sorted(events.items()):
        print(f"{kind}-events: {' '.join(got)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
