SUMMARY = "A signed sealcam update: sealcam-image's root file system"
DESCRIPTION = "A RAUC bundle (verity format) holding the root file system of \
               sealcam-image for the slot a camera is not running from. It \
               is signed with the release key and certificate named in \
               local.conf (RAUC_KEY_FILE, RAUC_CERT_FILE); cameras install \
               it only if it verifies against their keyring \
               (RAUC_KEYRING_FILE, in the image) and names their compatible \
               (SEALCAM_RAUC_COMPATIBLE)."
# The project has no public home yet; this names its repository.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://example.invalid/sealcam"
BUGTRACKER = "https://example.invalid/sealcam/issues"
SECTION = "images"
LICENSE = "MIT"
# A container of sealcam-image: its CVEs are those of the packages in it.
CVE_PRODUCT = ""

# A bundle is made from sealcam-image, not from sources.
SRC_URI = ""

inherit bundle

# The compatible of sealcam-rauc-conf (the camera's system.conf): a camera
# installs only bundles made for its machine. Override both at once in
# local.conf.
SEALCAM_RAUC_COMPATIBLE ??= "sealcam-${MACHINE}"

# The version a camera reports once it runs this bundle: the sealcam release
# it ships (this recipe's version follows sealcam_*.bb's).
RAUC_BUNDLE_VERSION = "${PV}"
RAUC_BUNDLE_FORMAT = "verity"
RAUC_BUNDLE_COMPATIBLE = "${SEALCAM_RAUC_COMPATIBLE}"
RAUC_BUNDLE_DESCRIPTION = "sealcam-image for ${MACHINE}"
RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "sealcam-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# The release key signs, never the owner's key (it signs recipient sets) nor
# a device key (it stays in its camera's TPM). Name them in local.conf; keep
# the key off the build machine's shared disks (README.md):
#   RAUC_KEY_FILE = "/path/to/sealcam-release.key.pem"
#   RAUC_CERT_FILE = "/path/to/sealcam-release.cert.pem"
