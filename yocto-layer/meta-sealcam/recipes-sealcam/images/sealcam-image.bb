SUMMARY = "A sealcam camera image"
DESCRIPTION = "A minimal systemd image that boots ready for sealcamd: the \
               camera daemon and its GStreamer elements, the TPM 2.0 stack \
               and, through meta-tpm's tpm2 distro feature, a kernel with TPM \
               support. The camera still needs its config, key and \
               certificate (README.md of meta-sealcam)."
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

IMAGE_INSTALL:append = " packagegroup-sealcam tpm2-tss"

IMAGE_ROOTFS_EXTRA_SPACE = "524288"
