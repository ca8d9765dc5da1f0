# `python3 xtask demo vsock`: run by busybox sh in the QEMU guest; its output is the demo.
# The daemon serves this guest as CID 3 (`--vm guest-cid=3,socket=...,uds-path=U`).
# First the guest connects to the host, CID 2 port 1234: the daemon makes that a
# connection to the Unix socket U_1234, where demo/host.py listens and answers what it
# got. Then the guest listens on port 5000 and demo/host.py connects to U, writes
# "CONNECT 5000" and sends its greeting, which the guest counts.
echo "guest -> host: 4096 bytes to CID 2 port 1234 (a host program on <uds-path>_1234)"
out=$(/vsock-test send 2 1234 4096) || { echo "$out"; exit 1; }
echo "$out"
crc=${out#*crc=}
crc=${crc%% *}
case "$out" in
*"reply=got_4096_bytes_crc32_${crc}_"*) echo "the host program got all 4096 bytes (crc32 $crc on both sides)" ;;
*) echo "the host program's answer is not what the guest sent"; exit 1 ;;
esac
echo "host -> guest: the guest waits on port 5000 for the host program (CONNECT 5000 on <uds-path>)"
/vsock-test recv 5000
