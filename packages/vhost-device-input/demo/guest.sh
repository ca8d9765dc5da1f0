# `python3 xtask demo input`: run by busybox sh in the QEMU guest; its output is the demo.
# The daemon serves `-e sim:keyboard`; demo/host.py types "hi" into its events socket
# once the guest prints INPUT-READY.
for d in /sys/class/input/event*; do
    case "$(cat "$d/device/name")" in "vhost-device-input sim"*) node=/dev/input/${d##*/};; esac
done
echo "the guest's virtio-input device (/proc/bus/input/devices):"
grep -B1 -A8 'vhost-device-input' /proc/bus/input/devices
echo "reading 8 events (24-byte struct input_event each) from $node:"
( sleep 1; echo INPUT-READY ) &
dd if="$node" bs=24 count=8 2>/dev/null | od -A n -t u2 -w24 | while read -r s0 s1 s2 s3 u0 u1 u2 u3 type code lo hi; do
    echo "type=$type code=$code value=$lo"
done
