# `python3 xtask demo scsi`: run by busybox sh in the QEMU guest; its output is the demo.
# The daemon serves two in-memory disks (mem:16M as LUN 0, mem:8M as LUN 1).
for i in $(seq 1 50); do [ -b /dev/sdb ] && break; sleep 0.2; done
for d in /sys/block/sd*; do
    n=${d##*/}
    echo "$n: $(cat $d/device/vendor) $(cat $d/device/model) rev $(cat $d/device/rev)," \
         "$(($(cat $d/size) / 2048)) MiB, ro=$(cat $d/ro), queues=$(ls $d/mq | wc -l)"
done
echo "writing 1 MiB to /dev/sda and reading it back:"
head -c 1048576 /dev/urandom > /tmp/data
dd if=/tmp/data of=/dev/sda bs=64k conv=fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/sda of=/tmp/back bs=64k count=16 2>/dev/null
echo "written: $(md5sum < /tmp/data)"
echo "read:    $(md5sum < /tmp/back)"
