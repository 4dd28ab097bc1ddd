# NVIDIA Jetson: CSI cameras through Argus (nvarguscamerasrc, served by
# nvargus-daemon), NVENC (nvv4l2h264enc), the video image compositor
# (nvvidconv), and the systemd drop-in that orders sealcamd after
# nvargus-daemon and tee-supplicant (the firmware TPM) and allows their
# devices.
FILES:sealcamd:append:tegra = " ${systemd_system_unitdir}/sealcamd.service.d"

RDEPENDS:sealcamd:append:tegra = " \
    gstreamer1.0-plugins-nvarguscamerasrc \
    gstreamer1.0-plugins-nvvidconv \
    gstreamer1.0-plugins-nvvideo4linux2 \
    tegra-argus-daemon \
"

do_install:append:tegra() {
    install -d ${D}${systemd_system_unitdir}/sealcamd.service.d
    install -m 0644 ${S}/systemd/boards/jetson.conf ${D}${systemd_system_unitdir}/sealcamd.service.d/
}
