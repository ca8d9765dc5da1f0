"""SCSI emulation, apart from the virtio transport: `codec` (CDBs and sense data as
bytes), `lun` (what a disk answers, or the block I/O it needs) and `target` (LUNs by
number, REPORT LUNS, missing LUNs). Nothing here does I/O or knows virtio."""
