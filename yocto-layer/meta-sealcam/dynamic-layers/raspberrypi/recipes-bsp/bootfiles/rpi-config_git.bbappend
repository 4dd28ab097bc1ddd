# With the tpm2 distro feature: the SPI bus and the overlay of an Infineon
# SLB9670 TPM module (the common Raspberry Pi TPM boards) in config.txt.
# Another module: set RPI_EXTRA_CONFIG yourself and leave tpm2 to meta-tpm.
ENABLE_SPI_BUS:rpi = "${@bb.utils.contains('DISTRO_FEATURES', 'tpm2', '1', '', d)}"
RPI_EXTRA_CONFIG:append:rpi = " ${@bb.utils.contains('DISTRO_FEATURES', 'tpm2', '\ndtoverlay=tpm-slb9670\n', '', d)}"
