SUMMARY = "The mounts of sealcam's A/B disk: boot and data partitions"
DESCRIPTION = "Mounts the boot partition at /boot/efi and the data partition \
               at /data, and bind-mounts the data partition's etc-sealcam, \
               sealcam and journal directories over /etc/sealcam, \
               /var/lib/sealcam and /var/log/journal, so that config, spool \
               and logs survive every update of the root slots. The first \
               boot seeds /data/etc-sealcam from the image."
# The project has no public home yet; this names its repository.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/sealcam"
BUGTRACKER = "https://example.invalid/sealcam/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
# The units and the script are the layer's own, under sealcam's license;
# the layer ships no copy of its text, oe-core does.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
# Configuration, not a program: no CVEs of its own.
CVE_PRODUCT = ""

SRC_URI = "\
    file://boot-efi.mount \
    file://data.mount \
    file://etc-sealcam.mount \
    file://sealcam-data-setup \
    file://sealcam-data-setup.service \
    file://var-lib-sealcam.mount \
    file://var-log-journal.mount \
"

# Where the fetcher unpacks: UNPACKDIR since styhead, WORKDIR on
# scarthgap, which has no UNPACKDIR (setting UNPACKDIR here would override
# oe-core's own on later series).
SEALCAM_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
# Files only: the sources are what was unpacked.
S = "${SEALCAM_UNPACKDIR}"

inherit allarch systemd

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${systemd_system_unitdir} ${D}${libexecdir} ${D}/data ${D}/boot/efi
    for unit in boot-efi.mount data.mount etc-sealcam.mount var-lib-sealcam.mount \
        var-log-journal.mount sealcam-data-setup.service; do
        install -m 0644 ${SEALCAM_UNPACKDIR}/$unit ${D}${systemd_system_unitdir}/
    done
    sed -i -e 's,@LIBEXECDIR@,${libexecdir},g' ${D}${systemd_system_unitdir}/sealcam-data-setup.service
    install -m 0755 ${SEALCAM_UNPACKDIR}/sealcam-data-setup ${D}${libexecdir}/
}

FILES:${PN} += "\
    /boot/efi \
    /data \
    ${systemd_system_unitdir} \
"

SYSTEMD_SERVICE:${PN} = "\
    boot-efi.mount \
    data.mount \
    etc-sealcam.mount \
    var-lib-sealcam.mount \
    var-log-journal.mount \
"
SYSTEMD_AUTO_ENABLE = "enable"

# The setup gives /data/sealcam to sealcamd's user.
RDEPENDS:${PN} = "sealcamd"
