SUMMARY = "Privacy-first camera firmware, its ingest service and consumer CLI"
DESCRIPTION = "sealcamd captures video through GStreamer, seals every frame to \
               the consumers' keys, signs a hash-chained manifest per fragment \
               with a device key held in the TPM, spools sealed fragments \
               crash-safely and uploads them over mutual TLS. sealcam-ingest \
               receives, checks and stores them without being able to decrypt \
               them; sealcam-ca holds the fleet CA key in its own service; \
               sealcam fetches, verifies and decrypts."
# The project has no public home yet; these name its repository.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/sealcam"
BUGTRACKER = "https://example.invalid/sealcam/issues"
SECTION = "multimedia"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=30;endline=30;md5=2507bd5f0713f05419cd2f22fa06fe62"
CVE_PRODUCT = "sealcam"

DEPENDS += "\
    glib-2.0 \
    gstreamer1.0 \
    gstreamer1.0-plugins-base \
    tpm2-tss \
"

PV .= "+git"

SRC_URI = "\
    git://example.invalid/sealcam.git;protocol=https;branch=main;destsuffix=${BP} \
    file://sealcamd.toml \
"
# The layer lives in the repository it builds, so no commit of it can name
# its own hash: a distribution pins the release it ships instead, with
# SRCREV:pn-sealcam = "<commit>" (README.md).
# nooelint: oelint.vars.autorev
SRCREV = "${AUTOREV}"

# Where the fetcher unpacks: UNPACKDIR since styhead, WORKDIR on
# scarthgap, which has no UNPACKDIR (setting UNPACKDIR here would override
# oe-core's own on later series).
SEALCAM_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
# The checkout goes where oe-core's default S points on every series
# (${WORKDIR}/${BP} on scarthgap, ${UNPACKDIR}/${BP} later, where setting
# S to .../git is refused): destsuffix=${BP}, and S is left alone.

require sealcam-crates.inc

inherit cargo pkgconfig systemd useradd

# Cargo features. s3: the ingest stores in S3-compatible buckets too (local
# directories only without it: a smaller binary for a camera-side ingest).
PACKAGECONFIG ??= "s3"
PACKAGECONFIG[s3] = "--features sealcam-ingest/s3"

# The programs; the workspace's test and benchmark crates are not built.
CARGO_BUILD_FLAGS:append = " -p sealcamd -p sealcam-ingest -p sealcam-ca -p sealcam --no-default-features"

# sealcamd needs tpm2-tss, which only meta-tpm (meta-security) provides:
# without that layer the recipe is skipped with this reason, so the layer
# still parses with openembedded-core alone.
# nooelint: oelint.task.noanonpython
python () {
    if 'tpm-layer' not in (d.getVar('BBFILE_COLLECTIONS') or '').split():
        raise bb.parse.SkipRecipe('sealcam needs tpm2-tss from meta-tpm (meta-security); add that layer')
}

PACKAGE_BEFORE_PN = "sealcamd sealcam-ingest sealcam-ca"

do_install:append() {
    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/sealcam ${D}${sysconfdir}/sealcam-ingest
    install -m 0644 ${S}/systemd/sealcamd.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/sealcam-firstboot.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/sealcam-ingest.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/sealcam-ca.service ${D}${systemd_system_unitdir}/
    # The config names key material and endpoints: root and the service's
    # group only.
    install -m 0640 -g sealcam ${SEALCAM_UNPACKDIR}/sealcamd.toml ${D}${sysconfdir}/sealcam/sealcamd.toml
    install -m 0640 -g sealcam-ingest ${S}/configs/sealcam-ingest.example.toml \
        ${D}${sysconfdir}/sealcam-ingest/ingest.toml
    install -d ${D}${datadir}/sealcamd/boards ${D}${datadir}/sealcamd/systemd
    install -m 0644 ${S}/configs/boards/*.toml ${D}${datadir}/sealcamd/boards/
    install -m 0644 ${S}/systemd/boards/*.conf ${D}${datadir}/sealcamd/systemd/
}

FILES:sealcamd += "\
    ${bindir}/sealcamd \
    ${datadir}/sealcamd \
    ${sysconfdir}/sealcam \
    ${systemd_system_unitdir}/sealcamd.service \
    ${systemd_system_unitdir}/sealcam-firstboot.service \
"
FILES:sealcam-ingest += "\
    ${bindir}/sealcam-ingest \
    ${sysconfdir}/sealcam-ingest \
    ${systemd_system_unitdir}/sealcam-ingest.service \
"
# The CA's service: its key never lives in the ingest's package or user.
FILES:sealcam-ca += "\
    ${bindir}/sealcam-ca \
    ${systemd_system_unitdir}/sealcam-ca.service \
"
CONFFILES:sealcamd = "${sysconfdir}/sealcam/sealcamd.toml"
CONFFILES:sealcam-ingest = "${sysconfdir}/sealcam-ingest/ingest.toml"

# The GStreamer elements the default graphs use (docs/ref/config.md); board
# layers add their camera and encoder elements.
RDEPENDS:sealcamd += "\
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-base-videotestsrc \
    gstreamer1.0-plugins-good-jpeg \
    gstreamer1.0-plugins-good-video4linux2 \
"

# A camera needs its config, key and certificate (sealcamd provision) before
# the daemon can run: enable it then (systemctl enable --now sealcamd).
SYSTEMD_PACKAGES = "sealcamd sealcam-ingest sealcam-ca"
SYSTEMD_SERVICE:sealcamd = "sealcamd.service sealcam-firstboot.service"
SYSTEMD_SERVICE:sealcam-ingest = "sealcam-ingest.service"
SYSTEMD_SERVICE:sealcam-ca = "sealcam-ca.service"
SYSTEMD_AUTO_ENABLE = "disable"

USERADD_PACKAGES = "sealcamd sealcam-ingest sealcam-ca"
# The camera's user opens the cameras (video) and the TPM's resource manager
# (tss, created here if tpm2-tss has not yet).
GROUPADD_PARAM:sealcamd = "--system video; --system tss"
USERADD_PARAM:sealcamd = "--system --user-group --groups video,tss --home-dir ${localstatedir}/lib/sealcam --no-create-home --shell /sbin/nologin sealcam"
# The ingest joins the CA's group to reach its socket (/run/sealcam-ca/ca.sock,
# 0660); it cannot read the CA's directory (0700, the CA's user alone).
GROUPADD_PARAM:sealcam-ingest = "--system sealcam-ca"
USERADD_PARAM:sealcam-ingest = "--system --user-group --groups sealcam-ca --home-dir ${localstatedir}/lib/sealcam-ingest --no-create-home --shell /sbin/nologin sealcam-ingest"
# The group may already exist (sealcam-ingest's GROUPADD): name it, never
# --user-group, which fails on an existing group.
GROUPADD_PARAM:sealcam-ca = "--system sealcam-ca"
USERADD_PARAM:sealcam-ca = "--system --gid sealcam-ca --home-dir ${localstatedir}/lib/sealcam-ca --no-create-home --shell /sbin/nologin sealcam-ca"
