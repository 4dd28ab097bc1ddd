SUMMARY = "A sealcam camera image with A/B root slots"
DESCRIPTION = "A systemd image that boots ready for sealcamd: the camera \
               daemon and its GStreamer elements, the TPM 2.0 stack and, \
               through meta-tpm's tpm2 distro feature, a kernel with TPM \
               support; on a GPT disk with a boot partition, root slots A and \
               B and a data partition (files/wic/sealcam-ab.wks.in). With meta-rauc \
               in the build it carries RAUC and its system.conf for the two \
               slots, and sealcam-bundle makes signed updates of it. The \
               camera still needs its provisioning (README.md of \
               meta-sealcam)."
# The project has no public home yet; this names its repository.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/sealcam"
BUGTRACKER = "https://example.invalid/sealcam/issues"
SECTION = "images"
LICENSE = "MIT"
# An image, not a program: its CVEs are those of the packages it holds.
CVE_PRODUCT = ""

# sealcamd runs under systemd (watchdog, sandboxing) and keeps its device
# key in the TPM.
REQUIRED_DISTRO_FEATURES = "systemd tpm2"

inherit core-image features_check

IMAGE_FEATURES += "ssh-server-dropbear"

# The kernel is in the root file system: GRUB boots the slot's own kernel,
# so an update replaces kernel and user space together.
IMAGE_INSTALL:append = " kernel-image packagegroup-sealcam sealcam-data tpm2-tss"

# ext4: a root slot's content, what sealcam-bundle ships; wic: the whole
# disk a user flashes (bmaptool, or dd after unzstd).
IMAGE_FSTYPES = "ext4 wic.zst wic.bmap"
WKS_FILE = "sealcam-ab.wks.in"
# The layout and its GRUB script are in the layer's files/wic, where oe-core
# looks for wks files since wrynose; scarthgap looks in wic/, so it is told.
WKS_SEARCH_PATH:prepend = "${@':'.join('%s/files/wic' % p for p in d.getVar('BBPATH').split(':'))}:"
SEALCAM_GRUB_CFG = "${@bb.utils.which(d.getVar('BBPATH'), 'files/wic/sealcam-ab-grub.cfg')}"
do_image_wic[file-checksums] += "${SEALCAM_GRUB_CFG}:True"
# GRUB for EFI on every architecture (oe-core adds it on x86 only).
WKS_FILE_DEPENDS:append = " grub-efi"

# Partition sizes in MiB. A root slot holds any later release too, so the
# image's root file system may not outgrow it (IMAGE_ROOTFS_MAXSIZE, in KiB).
SEALCAM_BOOT_MB ??= "128"
SEALCAM_SLOT_MB ??= "1024"
SEALCAM_DATA_MB ??= "1024"
WICVARS:append = " SEALCAM_BOOT_MB SEALCAM_DATA_MB SEALCAM_GRUB_CFG SEALCAM_SLOT_MB"
IMAGE_ROOTFS_MAXSIZE = "${@int(d.getVar('SEALCAM_SLOT_MB')) * 1024}"

# GRUB loads /boot/vmlinuz of the slot it boots, whatever the kernel's type.
sealcam_kernel_link() {
    ln -sf ${KERNEL_IMAGETYPE} ${IMAGE_ROOTFS}/boot/vmlinuz
}
sealcam_kernel_link[doc] = "Links /boot/vmlinuz, which GRUB loads, to the slot's kernel"
ROOTFS_POSTPROCESS_COMMAND:append = " sealcam_kernel_link"

# The journal lives on the data partition, bind-mounted at /var/log/journal;
# over the default volatile /var/log (a link into /var/volatile) nothing
# could be mounted there. scarthgap has VOLATILE_LOG_DIR for it; styhead and
# later the perms table files/fs-perms-volatile-log.txt.
# nooelint: oelint.task.noanonpython
python () {
    volatile_log_dir = d.getVar('VOLATILE_LOG_DIR')
    if volatile_log_dir is not None:
        volatile = oe.types.boolean(volatile_log_dir)
    else:
        volatile = 'files/fs-perms-volatile-log.txt' in (d.getVar('FILESYSTEM_PERMS_TABLES') or '').split()
    if volatile:
        raise bb.parse.SkipRecipe('sealcam-image keeps the journal on the data partition, so logs may not be volatile: set VOLATILE_LOG_DIR = "no" (scarthgap) or FILESYSTEM_PERMS_TABLES:remove = "files/fs-perms-volatile-log.txt" (later series) in local.conf')
}
