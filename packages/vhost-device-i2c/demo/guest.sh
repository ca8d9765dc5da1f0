# `python3 xtask demo i2c`: run by busybox sh in the QEMU guest; its output is the demo.
# The daemon serves `-l sim:32:80`: 24c02-like EEPROMs at 0x20 and 0x50.
for d in /sys/bus/i2c/devices/i2c-*; do
    case "$(cat "$d/name")" in *virtio*) bus=${d##*i2c-};; esac
done
echo "adapter i2c-$bus: $(cat /sys/bus/i2c/devices/i2c-$bus/name)"
echo "i2cdetect finds:"
i2cdetect -y "$bus"
# "Hello, EEPROM!" at offset 0x10 of the device at 0x50: one write, offset first
i2ctransfer -y "$bus" w15@0x50 0x10 0x48 0x65 0x6c 0x6c 0x6f 0x2c 0x20 0x45 0x45 0x50 0x52 0x4f 0x4d 0x21
echo "read back with a repeated start (write offset, read 14 bytes):"
i2ctransfer -y "$bus" w1@0x50 0x10 r14
echo "the first 48 bytes of the EEPROM at 0x50:"
i2cdump -y -r 0x00-0x2f "$bus" 0x50 b
echo "an address not in the list (0x51):"
i2cget -y "$bus" 0x51 0x00 || echo "i2cget failed, as it should"
