# `python3 xtask demo rng`: run by busybox sh in the QEMU guest; its output is the demo.
# Keep the kernel's own hwrng thread from racing our reads.
echo 0 > /sys/class/misc/hw_random/rng_quality 2>/dev/null || true
echo "rng_current: $(cat /sys/class/misc/hw_random/rng_current)"
head -c 65536 /dev/hwrng > /tmp/rng.bin
echo "first 64 bytes from /dev/hwrng:"
head -c 64 /tmp/rng.bin | hexdump -C
echo "read: $(wc -c < /tmp/rng.bin) bytes, gzip -9: $(gzip -9 -c /tmp/rng.bin | wc -c) bytes"
