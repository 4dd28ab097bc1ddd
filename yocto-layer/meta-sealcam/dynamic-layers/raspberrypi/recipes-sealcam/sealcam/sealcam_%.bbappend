# Raspberry Pi: CSI cameras through libcamera, the Pi 4's hardware encoder
# (v4l2h264enc, in gstreamer1.0-plugins-good-video4linux2), and the systemd
# drop-in that allows libcamera's DMA heaps.
FILES:sealcamd:append:rpi = " ${systemd_system_unitdir}/sealcamd.service.d"

RDEPENDS:sealcamd:append:rpi = " libcamera-gst"

do_install:append:rpi() {
    install -d ${D}${systemd_system_unitdir}/sealcamd.service.d
    install -m 0644 ${S}/systemd/boards/raspberrypi.conf ${D}${systemd_system_unitdir}/sealcamd.service.d/
}
