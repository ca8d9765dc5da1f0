"""vhost-user virtio-snd backend with per-direction enable switches and a control socket."""

__version__ = "0.1.0"
