SUMMARY = "RAUC's configuration on a sealcam camera: A/B slots and release keyring"
DESCRIPTION = "/etc/rauc/system.conf for the two root slots of sealcam-image \
               (GRUB chooses between them) and the release keyring that \
               update bundles must verify against. It stands in for \
               meta-rauc's example rauc-conf, whose place it takes \
               (virtual-rauc-conf)."
# The project has no public home yet; this names its repository.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/sealcam"
BUGTRACKER = "https://example.invalid/sealcam/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
# system.conf is the layer's own, under sealcam's license; the layer ships
# no copy of its text, oe-core does.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
# Configuration, not a program: no CVEs of its own.
CVE_PRODUCT = ""

SRC_URI = "file://system.conf"

# Where the fetcher unpacks: UNPACKDIR since styhead, WORKDIR on
# scarthgap, which has no UNPACKDIR (setting UNPACKDIR here would override
# oe-core's own on later series).
SEALCAM_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
# Files only: the sources are what was unpacked.
S = "${SEALCAM_UNPACKDIR}"

inherit allarch

# A camera installs only bundles made for its machine: sealcam-bundle names
# the same compatible. Override both at once in local.conf.
SEALCAM_RAUC_COMPATIBLE ??= "sealcam-${MACHINE}"

# The release CA's certificate (or the release certificate itself), by
# absolute path in local.conf. It is neither the owner's key nor a camera's
# device key (README.md):
#   RAUC_KEYRING_FILE = "/path/to/sealcam-release-ca.cert.pem"
RAUC_KEYRING_FILE ??= ""
SEALCAM_KEYRING_NAME = "sealcam-release-keyring.pem"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    if [ -z "${RAUC_KEYRING_FILE}" ] || ! grep -q "BEGIN CERTIFICATE" "${RAUC_KEYRING_FILE}"; then
        bbfatal "RAUC_KEYRING_FILE names no certificate: set it in local.conf to the absolute path of your release CA certificate (meta-sealcam README.md)"
    fi
    install -d ${D}${sysconfdir}/rauc
    install -m 0644 "${RAUC_KEYRING_FILE}" ${D}${sysconfdir}/rauc/${SEALCAM_KEYRING_NAME}
    sed -e 's,@COMPATIBLE@,${SEALCAM_RAUC_COMPATIBLE},' \
        -e 's,@KEYRING@,${SEALCAM_KEYRING_NAME},' \
        ${SEALCAM_UNPACKDIR}/system.conf > ${D}${sysconfdir}/rauc/system.conf
    chmod 0644 ${D}${sysconfdir}/rauc/system.conf
}
# A new keyring (a rotated release CA) rebuilds the package.
do_install[file-checksums] += "${@'%s:True' % d.getVar('RAUC_KEYRING_FILE') if d.getVar('RAUC_KEYRING_FILE') else ''}"
do_install[vardeps] += "RAUC_KEYRING_FILE SEALCAM_RAUC_COMPATIBLE"

FILES:${PN} += "${sysconfdir}/rauc"
CONFFILES:${PN} = "${sysconfdir}/rauc/system.conf"
RPROVIDES:${PN} = "virtual-rauc-conf"
RCONFLICTS:${PN} = "rauc-conf"
RREPLACES:${PN} = "rauc-conf"
