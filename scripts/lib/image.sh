# Sourced by scripts/image: the steps that make a board's root file system,
# its disk image and its update bundles. docs/design/images.md explains the
# layout and the A/B boot choice.

# Partition sizes in MiB. The root slots hold the whole Debian system
# (about 1.3 GiB with GStreamer and the kernel) with room to grow.
BOOT_MIB=128
SLOT_MIB=2048
DATA_MIB=512

# The packages every root file system holds: systemd as init, the kernel,
# udev, networking and time, RAUC for updates, and what the sealcamd
# package needs to run. The list is fixed, not read from the package, so
# the base can be built before the package exists (scripts/test builds it
# while cargo compiles); whatever a newer package needs beyond it is
# installed in a layer of its own (image_cached_root).
image_arch_packages() {
  local base=(
    systemd systemd-sysv systemd-timesyncd udev kmod dbus
    linux-image-"$1" initramfs-tools
    iproute2 ca-certificates e2fsprogs dosfstools fdisk rauc
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
    libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 libglib2.0-0
    libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-tctildr0
    # What libtss2-tctildr0 loads to reach /dev/tpmrm0.
    libtss2-tcti-device0
  )
  printf '%s\n' "${base[@]}" | sort -u | paste -sd' ' -
}

# image_missing ROOT DEB: the packages DEB depends on (first alternative of
# each) that the root file system ROOT does not hold, on one line. Read
# from ROOT's dpkg status, so it works for a root of any architecture.
image_missing() {
  local root="$1" deb="$2"
  local installed
  export LC_ALL=C
  installed=$(awk '/^Package: / { p = $2 } /^Status: .* installed$/ { print p }' \
    "$root/var/lib/dpkg/status" | sort -u)
  dpkg-deb -f "$deb" Depends | tr ',' '\n' \
    | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | grep -v '^$' | sort -u \
    | comm -23 - <(printf '%s\n' "$installed") | paste -sd' ' -
}

# A board's own packages: what writes its boot loader's state from Linux,
# on the Raspberry Pi its boot firmware and U-Boot; unsquashfs, which
# `rauc info` needs to read a bundle before it is installed; and RAUC's
# D-Bus service, which installs and which the health check asks.
image_board_packages() {
  case "$1" in
    qemu-*) echo grub-common squashfs-tools rauc-service ;;
    rpi4) echo libubootenv-tool raspi-firmware u-boot-rpi squashfs-tools rauc-service ;;
  esac
}

# The modules the initramfs needs to find and mount the root slot.
image_initramfs_modules() {
  case "$1" in
    qemu-*) printf '%s\n' virtio_pci virtio_mmio virtio_blk virtio_scsi sd_mod ext4 ;;
    rpi4) printf '%s\n' mmc_block sdhci_iproc sdhci_pltfm bcm2835 usb_storage uas sd_mod ext4 ;;
  esac
}

image_unmount() {
  local m
  [ -n "$1" ] || return 0
  for m in sys dev proc; do
    if mountpoint -q "$1/$m" 2>/dev/null; then umount "$1/$m"; fi
  done
}

# image_apt DIR PACKAGES: apt-get install in the root DIR, then forget the
# package lists.
image_apt() {
  local dir="$1" packages="$2" ok=0
  trap "image_unmount '$dir'" EXIT
  mount -t proc proc "$dir/proc"
  mount --bind /dev "$dir/dev"
  mount -t sysfs sys "$dir/sys"
  # INITRD=No: the kernel's postinst makes no initramfs (the board's layer
  # makes it once).
  chroot "$dir" apt-get update -q >&2 \
    && DEBIAN_FRONTEND=noninteractive INITRD=No chroot "$dir" apt-get install -y -q \
      --no-install-recommends $packages >&2 \
    && ok=1
  image_unmount "$dir"
  trap - EXIT
  if [ "$ok" != 1 ]; then
    echo "error: installing $packages in $dir failed (see above)" >&2
    return 1
  fi
  chroot "$dir" apt-get clean >&2
  rm -rf "$dir"/var/lib/apt/lists/*
}

# image_base ARCH PACKAGES DIR: an architecture's Debian 12 with every
# board's common packages (debootstrap and apt).
image_base() {
  local arch="$1" packages="$2" dir="$3"
  echo "building the $arch root file system (debootstrap, several minutes): $packages" >&2
  local foreign=()
  [ "$arch" = "$(dpkg --print-architecture)" ] || foreign=(--foreign)
  debootstrap "${foreign[@]}" --arch="$arch" --variant=minbase \
    --include=systemd,systemd-sysv,udev,kmod,dbus \
    bookworm "$dir" http://deb.debian.org/debian >&2
  if [ ${#foreign[@]} -gt 0 ]; then
    chroot "$dir" /debootstrap/debootstrap --second-stage >&2
  fi
  # The Raspberry Pi's boot firmware is in non-free-firmware.
  cat > "$dir/etc/apt/sources.list" <<'SOURCES'
deb http://deb.debian.org/debian bookworm main non-free-firmware
deb http://deb.debian.org/debian bookworm-updates main non-free-firmware
deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware
SOURCES
  # The initramfs holds only what mounts the root slot (the board's layer
  # lists it): Debian's default, every storage module made again by each
  # trigger, runs thousands of programs, slow through qemu-user.
  mkdir -p "$dir/etc/initramfs-tools/conf.d"
  echo MODULES=list > "$dir/etc/initramfs-tools/conf.d/sealcam.conf"
  # The Raspberry Pi firmware package copies kernels to /boot/firmware;
  # U-Boot loads them from the root slot instead, so there it finds none.
  mkdir -p "$dir/boot/firmware"
  # The camera's system user, with fixed ids: every image and update agrees
  # on who owns the files on the data partition.
  chroot "$dir" groupadd --system --gid 990 sealcam >&2
  chroot "$dir" useradd --system --uid 990 --gid 990 --home-dir /var/lib/sealcam \
    --shell /usr/sbin/nologin --comment "sealcam camera daemon" sealcam >&2
  image_apt "$dir" "$packages" || exit 1
  rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
  # DHCP on the wired network.
  mkdir -p "$dir/etc/systemd/network"
  printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$dir/etc/systemd/network/50-wired.network"
  chroot "$dir" systemctl enable systemd-networkd.service systemd-timesyncd.service >&2
  chroot "$dir" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >&2 || true
  # Made at each boot of a slot; what must outlive one is on the data
  # partition.
  : > "$dir/etc/machine-id"
}

# image_board BOARD PACKAGES DIR: a board's layer over its architecture's
# base: its packages and its initramfs.
image_board() {
  local board="$1" packages="$2" dir="$3"
  image_apt "$dir" "$packages" || exit 1
  image_initramfs_modules "$board" >> "$dir/etc/initramfs-tools/modules"
  rm -f "$dir"/boot/initrd.img-*
  chroot "$dir" update-initramfs -c -k "$(ls "$dir/lib/modules" | sort -V | tail -n 1)" >&2
  echo "sealcam-$board" > "$dir/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 sealcam-%s\n' "$board" > "$dir/etc/hosts"
}

# image_packages WHAT PACKAGES DIR: a layer of PACKAGES (an overlay's, or
# what a package needs beyond the base), for WHAT (a board or an
# architecture).
image_packages() {
  image_apt "$3" "$2" || exit 1
}

# image_layer NAME PARENT STEP ARGS...: the cached result of running STEP
# ARGS... DIR on a copy of PARENT (or on an empty DIR when PARENT is "-").
# Its name holds a hash of the parent's name, the arguments and STEP's own
# text, so a changed recipe is never served from the cache. Prints the path.
image_layer() {
  local name="$1" parent="$2" step="$3"
  shift 3
  local key dir
  key=$(printf '%s\n' "$(basename "$parent")" "$*" "$(declare -f "$step" image_apt)" | sha256sum | cut -c1-16)
  dir="$SEALCAM_CACHE/image/$name-$key"
  (
    # One build of a layer at a time (tests of several boards, or other
    # clones, may ask at once).
    flock 9
    if [ ! -d "$dir" ]; then
      image_unmount "$dir.partial"
      rm -rf --one-file-system "$dir.partial"
      if [ "$parent" = - ]; then
        mkdir -p "$dir.partial"
      else
        cp -a "$parent" "$dir.partial"
      fi
      "$step" "$@" "$dir.partial" || exit 1
      mv "$dir.partial" "$dir"
      # Older builds of this layer are of no further use (never a partial
      # one: another build may be under way for another key).
      find "$SEALCAM_CACHE/image" -maxdepth 1 -name "$name-*" ! -name "$name-$key" \
        ! -name "*.partial" -exec rm -rf --one-file-system {} + || true
    fi
  ) 9>"$SEALCAM_CACHE/image/lock-$name" || exit 1
  echo "$dir"
}

# image_cached_root BOARD ARCH DEB OVERLAY: the cached root file system the
# board's images start from (base, what DEB needs beyond it, board, and the
# overlay's packages). With DEB empty (scripts/image --layers), the layers
# that need no package.
image_cached_root() {
  local board="$1" arch="$2" deb="$3" overlay="$4"
  # shellcheck source=scripts/lib/cache.sh
  . "$repo/scripts/lib/cache.sh"
  mkdir -p "$SEALCAM_CACHE/image"
  local layer missing
  layer=$(image_layer "base-$arch" - image_base "$arch" "$(image_arch_packages "$arch")")
  if [ -n "$deb" ]; then
    missing=$(image_missing "$layer" "$deb")
    if [ -n "$missing" ]; then
      echo "the sealcamd package needs $missing beyond the $arch base; installed in a layer of their own (add them to image_arch_packages in scripts/lib/image.sh)" >&2
      layer=$(image_layer "deps-$arch" "$layer" image_packages "$arch" "$missing")
    fi
  fi
  layer=$(image_layer "board-$board" "$layer" image_board "$board" "$(image_board_packages "$board")")
  if [ -n "$overlay" ] && [ -f "$overlay/packages" ]; then
    # Named after the overlay that owns the package list: overlays that
    # link to another's list share its layer.
    local owner
    owner=$(basename "$(dirname "$(realpath "$overlay/packages")")")
    layer=$(image_layer "overlay-$board-$owner" "$layer" image_packages \
      "$board" "$(grep -v '^#' "$overlay/packages" | sort -u | paste -sd' ' -)")
  fi
  echo "$layer"
}

# image_root BOARD ARCH LOADER DEB VERSION RELEASE_CERT OVERLAY KEY_KIND: a
# fresh copy of the board's base with the package, the board's boot and
# update configuration and the overlay; prints its path. KEY_KIND is
# release, or development for the development release key.
image_root() {
  local board="$1" arch="$2" loader="$3" deb="$4" version="$5" cert="$6" overlay="$7" key_kind="$8"
  local base root
  base=$(image_cached_root "$board" "$arch" "$deb" "$overlay")
  root="$(mktemp -d "$repo/target/image/root-$board.XXXXXX")"
  cp -a "$base/." "$root/"
  cp "$deb" "$root/tmp/sealcamd.deb"
  chroot "$root" dpkg -i /tmp/sealcamd.deb >&2
  rm "$root/tmp/sealcamd.deb"
  # First boot provisions from the card when a bundle is there; updates
  # are installed when sealcamd has fetched one, and a slot on trial is
  # judged after each boot (docs/design/updates.md).
  local unit
  for unit in sealcam-firstboot.service sealcam-install.path sealcam-health.service; do
    if [ -f "$root/lib/systemd/system/$unit" ] || [ -f "$root/usr/lib/systemd/system/$unit" ]; then
      chroot "$root" systemctl enable "$unit" >&2
    fi
  done

  # The boot loaders load /vmlinuz and /initrd.img from the slot (Debian
  # makes these links only when the kernel's postinst makes the initramfs).
  local kernel
  kernel=$(ls "$root/lib/modules" | sort -V | tail -n 1)
  ln -sfn "boot/vmlinuz-$kernel" "$root/vmlinuz"
  ln -sfn "boot/initrd.img-$kernel" "$root/initrd.img"

  # Which image this is: what the camera reports, what bundles compare.
  printf 'IMAGE_ID=sealcam-%s\nIMAGE_VERSION=%s\n' "$board" "$version" >> "$root/usr/lib/os-release"
  # Whose key its updates need: an image that trusts the development key
  # says so wherever it runs.
  echo "SEALCAM_RELEASE_KEY=$key_kind" >> "$root/usr/lib/os-release"
  # sealcamd's update.version_file.
  mkdir -p "$root/usr/lib/sealcam"
  echo "$version" > "$root/usr/lib/sealcam/release"

  # The A/B boot chooser that RAUC calls, and where the boot loader keeps
  # its state.
  install -D -m 0755 "$repo/configs/image/bootchooser" "$root/usr/lib/sealcam/bootchooser"
  case "$loader" in
    grub) printf 'LOADER=grub\nENV=/boot/efi/grub/grubenv\n' ;;
    uboot) printf 'LOADER=uboot\nENV=/boot/firmware/uboot.env\n' ;;
  esac > "$root/etc/sealcam-boot.conf"
  [ "$loader" = uboot ] && echo "/boot/firmware/uboot.env 0x0000 0x4000" > "$root/etc/fw_env.config"

  # RAUC: the two root slots, the release keyring, status on the data
  # partition.
  mkdir -p "$root/etc/rauc"
  sed "s/@BOARD@/$board/" "$repo/configs/image/rauc-system.conf" > "$root/etc/rauc/system.conf"
  install -m 0644 "$cert" "$root/etc/rauc/keyring.pem"

  # Mounts: the boot partition, and the data partition with what must
  # outlive an update bound into place.
  local bootdir=/boot/efi
  [ "$loader" = uboot ] && bootdir=/boot/firmware
  mkdir -p "$root$bootdir" "$root/data" "$root/var/log/journal" "$root/var/lib/sealcam-install"
  cat > "$root/etc/fstab" <<FSTAB
# sealcam $board: the root slot is mounted by the kernel (root=PARTLABEL=rootfs-a or -b).
PARTLABEL=boot  $bootdir  vfat  umask=0077  0  2
PARTLABEL=data  /data  ext4  defaults,noatime  0  2
/data/etc-sealcam  /etc/sealcam  none  bind,x-systemd.requires-mounts-for=/data  0  0
/data/sealcam  /var/lib/sealcam  none  bind,x-systemd.requires-mounts-for=/data  0  0
/data/journal  /var/log/journal  none  bind,x-systemd.requires-mounts-for=/data  0  0
/data/sealcam-install  /var/lib/sealcam-install  none  bind,x-systemd.requires-mounts-for=/data  0  0
FSTAB
  # A slot that hangs (on trial or not) is restarted by the board's
  # watchdog, which systemd keeps fed while it runs (where the board has
  # none, systemd says so and goes on); a kernel panic restarts too
  # (panic=10). A slot on trial that restarts is not chosen again.
  mkdir -p "$root/etc/systemd/system.conf.d"
  printf '[Manager]\nRuntimeWatchdogSec=60s\nRebootWatchdogSec=10min\n' \
    > "$root/etc/systemd/system.conf.d/sealcam-watchdog.conf"
  install -D -m 0755 "$repo/configs/image/growdata" "$root/usr/lib/sealcam/growdata"
  install -D -m 0644 "$repo/configs/image/sealcam-growdata.service" \
    "$root/etc/systemd/system/sealcam-growdata.service"
  chroot "$root" systemctl enable sealcam-growdata.service >&2

  # The QEMU boards' camera is vivid, the kernel's virtual one.
  case "$board" in
    qemu-*)
      echo vivid > "$root/etc/modules-load.d/vivid.conf"
      echo "options vivid n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0" \
        > "$root/etc/modprobe.d/vivid.conf"
      ;;
  esac

  if [ -n "$overlay" ]; then
    # Files first, then the overlay's own hook, run in the root.
    [ -d "$overlay/files" ] && cp -a "$overlay/files/." "$root/"
    if [ -x "$overlay/hook" ]; then
      mount -t proc proc "$root/proc"
      mount --bind /dev "$root/dev"
      local ok=0
      BOARD="$board" ARCH="$arch" ROOT="$root" "$overlay/hook" >&2 && ok=1
      image_unmount "$root"
      [ "$ok" = 1 ] || { echo "error: the overlay's hook failed" >&2; exit 1; }
    fi
  fi
  echo "$root"
}

# image_slot ROOT FILE: the root slot's file system, without what lives on
# the data partition.
image_slot() {
  local root="$1" file="$2"
  local size_mb
  size_mb=$(( $(du -sm "$root" | cut -f1) + 256 ))
  if [ "$size_mb" -gt "$SLOT_MIB" ]; then
    echo "error: the root file system needs $size_mb MiB, more than a slot's $SLOT_MIB" >&2
    exit 1
  fi
  mkfs.ext4 -q -F -L sealcam-root -d "$root" "$file" "${size_mb}M" >&2
}

# image_data ROOT FILE: the data partition's first contents, taken from the
# root (which keeps only the empty mount points).
image_data() {
  local root="$1" file="$2"
  local stage
  stage=$(mktemp -d "$repo/target/image/data.XXXXXX")
  mkdir -p "$stage/etc-sealcam" "$stage/sealcam" "$stage/journal" "$stage/rauc"
  # The update installer's own directory (root only): its trial note must
  # outlive the reboot into the new slot.
  mkdir -m 0700 "$stage/sealcam-install"
  cp -a "$root/etc/sealcam/." "$stage/etc-sealcam/" 2>/dev/null || true
  cp -a "$root/var/lib/sealcam/." "$stage/sealcam/" 2>/dev/null || true
  chown --reference="$root/etc/sealcam" "$stage/etc-sealcam" 2>/dev/null || true
  chmod --reference="$root/etc/sealcam" "$stage/etc-sealcam" 2>/dev/null || true
  chown --reference="$root/var/lib/sealcam" "$stage/sealcam" 2>/dev/null || true
  chmod --reference="$root/var/lib/sealcam" "$stage/sealcam" 2>/dev/null || true
  chown root:systemd-journal "$stage/journal" 2>/dev/null || true
  chmod 2755 "$stage/journal"
  find "$root/etc/sealcam" "$root/var/lib/sealcam" -mindepth 1 -delete 2>/dev/null || true
  mkfs.ext4 -q -F -L sealcam-data -d "$stage" "$file" "${DATA_MIB}M" >&2
  rm -rf "$stage"
}

# image_boot BOARD ARCH LOADER ROOT FILE: the boot partition.
image_boot() {
  local board="$1" arch="$2" loader="$3" root="$4" file="$5"
  local stage
  stage=$(mktemp -d "$repo/target/image/boot.XXXXXX")
  local console extra=""
  case "$board" in
    qemu-amd64) console="console=tty0 console=ttyS0,115200" ;;
    qemu-arm64) console="console=ttyAMA0" ;;
    rpi4) console="console=ttyS1,115200 console=tty1" ;;
  esac
  [ -f "$root/etc/sealcam-cmdline-extra" ] && extra=$(cat "$root/etc/sealcam-cmdline-extra")
  # Kernel arguments are words of printable characters; the boot scripts'
  # templates take them through sed, so \ | & and newlines are refused.
  if [[ "$extra" == *[\\\|\&]* ]] || [[ "$extra" == *$'\n'* ]]; then
    echo "error: /etc/sealcam-cmdline-extra holds \\, |, & or a newline; give kernel arguments on one line" >&2
    exit 1
  fi
  case "$loader" in
    grub)
      local format efi
      case "$arch" in
        amd64) format=x86_64-efi efi=BOOTX64.EFI ;;
        arm64) format=arm64-efi efi=BOOTAA64.EFI ;;
      esac
      mkdir -p "$stage/EFI/BOOT" "$stage/grub"
      # The loader finds its partition by label and reads grub.cfg there.
      cat > "$stage/embedded.cfg" <<'EMBED'
search --no-floppy --label SEALBOOT --set=root
set prefix=($root)/grub
configfile ($root)/grub/grub.cfg
EMBED
      grub-mkimage -O "$format" -o "$stage/EFI/BOOT/$efi" -p /grub -c "$stage/embedded.cfg" \
        part_gpt fat ext2 normal linux configfile search search_label loadenv \
        test echo regexp sleep reboot halt gzio all_video >&2
      rm "$stage/embedded.cfg"
      sed -e "s|@CONSOLE@|$console|" -e "s|@EXTRA@|$extra|" \
        "$repo/configs/image/grub.cfg" > "$stage/grub/grub.cfg"
      # The A/B state: slot A good, B empty.
      grub-editenv "$stage/grub/grubenv" create
      grub-editenv "$stage/grub/grubenv" set "ORDER=A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
      ;;
    uboot)
      # The Raspberry Pi firmware (start4.elf and friends), its device
      # trees, and U-Boot as the "kernel" it starts.
      cp -a "$root/usr/lib/raspi-firmware/." "$stage/"
      local kdir
      kdir=$(ls -d "$root"/usr/lib/linux-image-* | sort -V | tail -n 1)
      cp "$kdir"/broadcom/bcm2711-rpi-4-b.dtb "$kdir"/broadcom/bcm2711-rpi-400.dtb \
        "$kdir"/broadcom/bcm2711-rpi-cm4.dtb "$stage/" 2>/dev/null || true
      cp "$root/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$stage/u-boot.bin"
      cp "$repo/configs/image/rpi4-config.txt" "$stage/config.txt"
      sed -e "s|@CONSOLE@|$console|" -e "s|@EXTRA@|$extra|" \
        "$repo/configs/image/uboot-boot.cmd" > "$stage/boot.cmd"
      mkimage -A arm64 -O linux -T script -C none -d "$stage/boot.cmd" "$stage/boot.scr" >/dev/null
      printf 'ORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\nB_TRY=0\n' > "$stage/env.txt"
      mkenvimage -s 0x4000 -o "$stage/uboot.env" "$stage/env.txt"
      rm "$stage/env.txt"
      ;;
  esac
  rm -f "$file"
  mkfs.vfat -n SEALBOOT -C "$file" $((BOOT_MIB * 1024)) >/dev/null
  mcopy -s -i "$file" "$stage"/* ::/
  rm -rf "$stage"
}

# image_disk BOARD ARCH LOADER ROOT FILE: the whole card.
image_disk() {
  local board="$1" arch="$2" loader="$3" root="$4" file="$5"
  local work
  work=$(mktemp -d "$repo/target/image/parts.XXXXXX")
  image_boot "$board" "$arch" "$loader" "$root" "$work/boot.img"
  image_data "$root" "$work/data.img"
  image_slot "$root" "$work/rootfs.img"
  # 1 MiB alignment; the partitions in the order docs/design/images.md gives.
  local start_boot=1 start_a start_b start_data total
  start_a=$((start_boot + BOOT_MIB))
  start_b=$((start_a + SLOT_MIB))
  start_data=$((start_b + SLOT_MIB))
  total=$((start_data + DATA_MIB + 1))
  rm -f "$file"
  truncate -s "${total}M" "$file"
  # GPT on every board. The Raspberry Pi 4 boots from GPT with its boot
  # EEPROM of 2020-09 or later (docs/guide/flash.md says how to check); its
  # firmware wants the boot partition typed "Microsoft basic data".
  local boot_type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B linux=0FC63DAF-8483-4772-8E79-3D69D8477DE4
  [ "$loader" = uboot ] && boot_type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
  sfdisk -q "$file" <<TABLE
label: gpt
start=${start_boot}MiB, size=${BOOT_MIB}MiB, type=$boot_type, name=boot
start=${start_a}MiB, size=${SLOT_MIB}MiB, type=$linux, name=rootfs-a
start=${start_b}MiB, size=${SLOT_MIB}MiB, type=$linux, name=rootfs-b
start=${start_data}MiB, size=${DATA_MIB}MiB, type=$linux, name=data
TABLE
  dd if="$work/boot.img" of="$file" bs=1M seek="$start_boot" conv=notrunc,sparse status=none
  dd if="$work/rootfs.img" of="$file" bs=1M seek="$start_a" conv=notrunc,sparse status=none
  dd if="$work/data.img" of="$file" bs=1M seek="$start_data" conv=notrunc,sparse status=none
  rm -rf "$work"
}

# image_bundle BOARD ROOT VERSION CERT KEY FILE: a RAUC bundle holding the
# root slot, signed with the release key.
image_bundle() {
  local board="$1" root="$2" version="$3" cert="$4" key="$5" file="$6"
  local work
  work=$(mktemp -d "$repo/target/image/bundle.XXXXXX")
  mkdir -p "$work/content"
  image_data "$root" "$work/data.img"
  rm "$work/data.img"
  image_slot "$root" "$work/content/rootfs.ext4"
  cat > "$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=sealcam-$board
version=$version
description=sealcam $board $version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
  rm -f "$file"
  rauc bundle --cert="$cert" --key="$key" "$work/content" "$file" >&2
  rm -rf "$work"
}
