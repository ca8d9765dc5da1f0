"""The per-direction enable switches, shared by the control socket and the I/O path.

Each direction has a `Switch` (an atomic flag C code reads on every period, see
_pcmring). `Switches` adds what Python needs around them: parsing --initial-streams,
and telling each connected device when a switch flips so it can re-pace its streams and
(de)activate the host stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._pcmring import Switch
from .protocol import Direction

Listener = Callable[[Direction, bool], None]

#: --initial-streams: which directions start enabled. Input is off by default: a
#: microphone should not reach a guest until someone asks for it.
DEFAULT_INITIAL_STREAMS = "output"


def parse_initial_streams(text: str) -> frozenset[Direction]:
    """`output`, `input`, `output,input` (any order) or `none`."""
    words = [w.strip().lower() for w in text.split(",")]
    if words == ["none"]:
        return frozenset()
    chosen = set()
    for word in words:
        try:
            chosen.add(Direction[word.upper()])
        except KeyError:
            raise ValueError(f"{text!r}: expected output, input, output,input or none") from None
    return frozenset(chosen)


class Switches:
    """Both directions' switches plus change listeners (thread-safe)."""

    def __init__(self, enabled: frozenset[Direction] = frozenset({Direction.OUTPUT})) -> None:
        self._switches = {d: Switch(d in enabled) for d in Direction}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def switch(self, direction: Direction) -> Switch:
        return self._switches[direction]

    def enabled(self, direction: Direction) -> bool:
        return self._switches[direction].enabled

    def states(self) -> dict[Direction, bool]:
        """Both directions' state now (what QUERY answers)."""
        return {d: switch.enabled for d, switch in self._switches.items()}

    def set(self, direction: Direction, enabled: bool) -> None:
        """Flip a switch. The flag changes first (the I/O path sees it on its next
        period), then listeners run on the caller's thread."""
        with self._lock:
            self._switches[direction].enabled = enabled
            listeners = list(self._listeners)
        for listener in listeners:
            listener(direction, enabled)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(direction, enabled)` on every change; returns unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe
