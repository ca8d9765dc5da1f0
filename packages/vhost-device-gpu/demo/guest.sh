# `xtask demo gpu`: the guest's virtio-gpu KMS driver on vhost-device-gpu. drm_pattern
# draws a pattern at the preferred mode (QEMU's 1280x800), sets a cursor, then a second
# pattern at 800x600; at each "SHOT" the host saves QEMU's screendump as a PNG.
for m in drm drm_kms_helper drm_shmem_helper virtio_dma_buf virtio_gpu; do
    insmod /lib/modules/$m.ko || echo "insmod $m failed"
done
i=0
while [ ! -e /dev/dri/card0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
echo "connector: $(cat /sys/class/drm/card0-Virtual-1/status), modes: $(head -3 /sys/class/drm/card0-Virtual-1/modes | tr '\n' ' ')"
for port in /sys/class/virtio-ports/*; do
    if [ "$(cat "$port/name")" = ctl ]; then CTL="/dev/${port##*/}"; fi
done
/drm_pattern "$CTL" | grep -v '^MODE '
