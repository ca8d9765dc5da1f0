"""vhost-user virtio-vsock device backend (hybrid vsock over Unix sockets)."""
