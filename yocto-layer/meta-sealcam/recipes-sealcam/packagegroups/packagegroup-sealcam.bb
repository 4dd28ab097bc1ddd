SUMMARY = "A sealcam camera: the daemon, its GStreamer elements and the TPM stack"
DESCRIPTION = "Everything a sealcam camera runs: sealcamd, the GStreamer \
               plugins of its capture graphs, the software H.264 encoder for \
               boards without a hardware one, and V4L2 utilities."
# The project has no public home yet; this names its repository.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/sealcam"
BUGTRACKER = "https://example.invalid/sealcam/issues"
SECTION = "multimedia"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "\
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-good-video4linux2 \
    sealcam \
    sealcamd \
    v4l-utils \
"

# The software encoder (Raspberry Pi 5, Jetson Orin Nano, USB cameras on a
# PC). x264 is under a commercial license flag in oe-core: accept it with
# LICENSE_FLAGS_ACCEPTED += "commercial" (README.md).
RRECOMMENDS:${PN} = "gstreamer1.0-plugins-ugly-x264"
