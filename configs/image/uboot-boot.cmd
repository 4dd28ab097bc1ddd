# sealcam on the Raspberry Pi: chooses root slot A or B, as grub.cfg does
# on the other boards (configs/image/bootchooser describes the variables).
test -n "${ORDER}" || setenv ORDER "A B"
test -n "${A_OK}" || setenv A_OK 1
test -n "${B_OK}" || setenv B_OK 0
setenv chosen
for s in ${ORDER}; do
  if test -z "${chosen}"; then
    if test "${s}" = A; then setenv ok "${A_OK}"; setenv try "${A_TRY}"; fi
    if test "${s}" = B; then setenv ok "${B_OK}"; setenv try "${B_TRY}"; fi
    if test "${ok}" = 1; then
      setenv chosen "${s}"
    elif test "${try}" = 1; then
      setenv chosen "${s}"
      setenv ${s}_TRY 0
      setenv ok; setenv try
      saveenv
    fi
  fi
done
setenv ok; setenv try
test -n "${chosen}" || setenv chosen A
if test "${chosen}" = A; then setenv part 2; setenv label rootfs-a; else setenv part 3; setenv label rootfs-b; fi
echo "sealcam: booting slot ${chosen}"
load mmc 0:${part} ${kernel_addr_r} /vmlinuz
load mmc 0:${part} ${ramdisk_addr_r} /initrd.img
setenv bootargs "root=PARTLABEL=${label} rw rootwait rauc.slot=${chosen} panic=10 @CONSOLE@ @EXTRA@"
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}
# Only when the slot's kernel could not be loaded or started: restart, and
# a slot that was on trial is not chosen again.
echo "sealcam: slot ${chosen} did not start; restarting"
sleep 5
reset
