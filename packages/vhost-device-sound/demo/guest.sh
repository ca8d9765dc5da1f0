# `python3 xtask demo sound`: run by busybox sh in the QEMU guest; its output is the demo.
cat /proc/asound/cards
echo "--- 2 s of a 440 Hz tone, played through vhost-device-sound (null backend):"
/snd-test play 2
echo "--- 1 s of capture (the input is off by default: silence, in real time):"
/snd-test capture 1 --out /dev/null
