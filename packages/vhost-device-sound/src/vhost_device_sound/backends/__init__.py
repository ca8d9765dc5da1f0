"""Audio backends by --backend name; each is imported only when chosen."""

from __future__ import annotations

import importlib

from ..errors import AudioBackendError
from .base import AudioBackend, StreamSetup

#: name -> (module, class); modules load lazily so a missing host library only
#: matters to the backend that needs it.
BACKENDS: dict[str, tuple[str, str]] = {
    "null": ("vhost_device_sound.backends.null", "NullBackend"),
    "pipewire": ("vhost_device_sound.backends.pipewire", "PipeWireBackend"),
    "alsa": ("vhost_device_sound.backends.alsa", "AlsaBackend"),
}


def backend_class(name: str) -> type[AudioBackend]:
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        raise AudioBackendError(
            f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AudioBackendError(f"the {name} backend is not available: {exc}") from exc
    cls: type[AudioBackend] = getattr(module, class_name)
    return cls


__all__ = ["AudioBackend", "BACKENDS", "StreamSetup", "backend_class"]
