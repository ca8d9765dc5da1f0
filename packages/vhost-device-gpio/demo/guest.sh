# `python3 xtask demo gpio`: run by busybox sh in the QEMU guest; its output is the demo.
chip=$(ls /dev/gpiochip* | head -n 1)
echo "--- the virtio chip $chip and its lines (an 8-line mock chip on the host):"
/gpio_test info "$chip"
echo "--- line 1 as an output: set high, read back, set low, read back:"
/gpio_test output "$chip" 1
echo "--- waiting for both edges on line 2; the host drives it through --mock-control:"
/gpio_test edges "$chip" 2 2
