"""VIRTIO 1.3 control elements: the master volume and mute the guest's mixer shows.

Two elements, as ALSA names them so guest tools find them: "Master Playback Volume"
(integer 0..100, perceptual) and "Master Playback Switch" (boolean, 1 = sound on). Their
values map to the backend as a linear gain (volume cubed, the usual perceptual curve) and
a mute flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ControlValueError
from .protocol import CTL_NAME_SIZE, CtlAccess, CtlInfo, CtlRole, CtlType

VOLUME_MAX = 100


@dataclass(frozen=True)
class Element:
    name: str
    role: CtlRole
    type: CtlType
    minimum: int
    maximum: int

    def info(self) -> CtlInfo:
        return CtlInfo(
            hda_fn_nid=0,
            role=self.role,
            type=self.type,
            access=CtlAccess.READ | CtlAccess.WRITE,
            count=1,
            index=0,
            name=self.name.encode().ljust(CTL_NAME_SIZE, b"\0"),
            minimum=self.minimum if self.type is CtlType.INTEGER else 0,
            maximum=self.maximum if self.type is CtlType.INTEGER else 0,
            step=1 if self.type is CtlType.INTEGER else 0,
        )


ELEMENTS = (
    Element("Master Playback Volume", CtlRole.VOLUME, CtlType.INTEGER, 0, VOLUME_MAX),
    Element("Master Playback Switch", CtlRole.MUTE, CtlType.BOOLEAN, 0, 1),
)
VOLUME, SWITCH = 0, 1


class MasterControls:
    """The two elements' values; the device reads and writes them for the guest."""

    def __init__(self) -> None:
        self.values = [VOLUME_MAX, 1]

    def read(self, control_id: int) -> int:
        return self.values[control_id]

    def write(self, control_id: int, value: int) -> bool:
        """Set one element; returns whether it changed. Out of range: ControlValueError."""
        element = ELEMENTS[control_id]
        if not element.minimum <= value <= element.maximum:
            raise ControlValueError(
                control_id,
                value,
                f"{element.name}: {value} outside {element.minimum}..{element.maximum}",
            )
        changed = self.values[control_id] != value
        self.values[control_id] = value
        return changed

    @property
    def gain(self) -> float:
        return (self.values[VOLUME] / VOLUME_MAX) ** 3

    @property
    def muted(self) -> bool:
        return self.values[SWITCH] == 0
