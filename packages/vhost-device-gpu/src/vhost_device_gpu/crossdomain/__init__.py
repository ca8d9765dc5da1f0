"""The cross-domain context type (capset 5): a guest Wayland proxy reaching the host
compositor through virtio-gpu. `protocol` is the wire format (pure), `items` the ids
fds are swapped for, `channel` the compositor connection, `context` the contexts
themselves and the POLL fences they hold."""

from .context import CrossDomain, CrossDomainContext
from .protocol import CAPSET_CROSS_DOMAIN

__all__ = ["CAPSET_CROSS_DOMAIN", "CrossDomain", "CrossDomainContext"]
