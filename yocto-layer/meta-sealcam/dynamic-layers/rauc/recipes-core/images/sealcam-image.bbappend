# With meta-rauc: RAUC, its system.conf and release keyring for the two root
# slots (sealcam-rauc-conf, in place of meta-rauc's example rauc-conf), and
# grub-editenv, through which RAUC switches GRUB's slot order. Not
# rauc-mark-good: it marks a slot good as soon as it boots, and a sealcam
# slot is good only once its health check has proved it works (sealcamd
# running, a fragment sealed, signed and acknowledged).
IMAGE_INSTALL:append = " grub-editenv rauc sealcam-rauc-conf"
BAD_RECOMMENDATIONS:append = " rauc-conf rauc-mark-good"
