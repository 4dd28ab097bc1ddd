# With the tpm2 distro feature: TPM 2.0 over SPI (Infineon SLB9670 and
# compatible modules) for sealcamd's device key. rpi-config sets the overlay.
FILESEXTRAPATHS:prepend:rpi := "${THISDIR}/files:"
SRC_URI:append:rpi = " ${@bb.utils.contains('DISTRO_FEATURES', 'tpm2', 'file://sealcam-tpm-spi.cfg', '', d)}"
