//! The bundle's check, on bundles made in a temporary directory: a good one
//! passes, and each kind of fault is refused naming its file.

use std::path::Path;

use p256::pkcs8::{EncodePublicKey, LineEnding};
use sealcam_format::recipients::{Recipient, RecipientSet};
use sealcam_format::ConsumerSecretKey;
use sealcam_hal::board::Board;

use super::bundle::{self, Bundle, BundleError};

const CONFIG: &str = r#"device_id = "cam1"
[camera]
source = "test"
[stream]
name = "front"
[recipients]
set = "recipients.rset"
owner_public_key = "/etc/sealcam/owner.pub"
[identity]
tpm_tcti = "device:/dev/tpmrm0"
certificate = "device.crt"
[spool]
dir = "/var/lib/sealcam/spool"
[upload]
url = "https://ingest.example.net:8443"
ca = "fleet-ca.crt"
"#;

/// A good bundle in `dir`, its recipient set signed by `signer` (the
/// owner whose key is in owner.pub unless another is given).
fn write_bundle(dir: &Path, signer: Option<&p256::ecdsa::SigningKey>) {
    let owner = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let consumer = ConsumerSecretKey::generate(&mut rand::rngs::OsRng);
    let set = RecipientSet {
        version: 1,
        issued_unix: 1,
        recipients: vec![Recipient {
            label: "alice".into(),
            key: consumer.public().clone(),
        }],
    }
    .sign(signer.unwrap_or(&owner))
    .unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["fleet".into()]).unwrap();
    let owner_pem = owner
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    std::fs::write(dir.join(bundle::CONFIG), CONFIG).unwrap();
    std::fs::write(dir.join(bundle::CA), ca.cert.pem()).unwrap();
    std::fs::write(dir.join(bundle::OWNER), owner_pem).unwrap();
    std::fs::write(dir.join(bundle::RECIPIENTS), set).unwrap();
    std::fs::write(
        dir.join(bundle::ENROLL_URL),
        "https://ingest.example.net:8444\n",
    )
    .unwrap();
    std::fs::write(dir.join(bundle::TOKEN), "0123abcd\n").unwrap();
}

fn check(dir: &Path) -> Result<bundle::Checked, BundleError> {
    bundle::check(
        Bundle::read_dir(dir)?,
        Path::new("/etc/sealcam"),
        Board::Generic,
    )
}

#[test]
fn a_good_bundle_passes_as_installed_in_etc() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), None);
    let checked = check(dir.path()).unwrap();
    assert_eq!(checked.device.as_str(), "cam1");
    assert_eq!(checked.bundle.token, "0123abcd");
    assert_eq!(
        checked.config.identity.certificate,
        Path::new("/etc/sealcam/device.crt")
    );
    // The CA, owner key and set are read from the bundle until installed.
    assert_eq!(checked.config.upload.ca, dir.path().join(bundle::CA));
}

#[test]
fn a_set_another_key_signed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mallory = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    write_bundle(dir.path(), Some(&mallory));
    let err = check(dir.path()).map(|_| ()).unwrap_err();
    assert!(matches!(err, BundleError::Recipients(_)), "{err}");
    assert!(err.to_string().contains("owner.pub"), "{err}");
}

/// The error of the good bundle with `file` replaced by `contents`.
fn refusal(file: &str, contents: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), None);
    std::fs::write(dir.path().join(file), contents).unwrap();
    check(dir.path()).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn each_fault_is_refused_naming_its_file() {
    let cases: [(&str, String, &str); 11] = [
        (
            bundle::CONFIG,
            CONFIG.replace("\"device.crt\"", "\"../shadow\""),
            "identity.certificate must name a file in /etc/sealcam",
        ),
        (
            bundle::CONFIG,
            CONFIG.replace("\"device.crt\"", "\"/var/lib/device.crt\""),
            "identity.certificate must name a file in /etc/sealcam",
        ),
        (
            bundle::ENROLL_URL,
            "http://ingest:8444".into(),
            "enroll-url: \"http://ingest:8444\" is not https://",
        ),
        (bundle::ENROLL_URL, "ingest:8444".into(), "enroll-url:"),
        (bundle::TOKEN, "\n".into(), "token: empty"),
        (
            bundle::TOKEN,
            "two words".into(),
            "token: not one printable word",
        ),
        (bundle::CA, "not a certificate".into(), "fleet-ca.crt:"),
        (
            bundle::CONFIG,
            CONFIG.replace("fleet-ca.crt", "/etc/ssl/other.crt"),
            "upload.ca must name the bundle's fleet-ca.crt",
        ),
        (
            bundle::CONFIG,
            CONFIG.replace(
                "tpm_tcti = \"device:/dev/tpmrm0\"",
                "insecure_software_key = true\nkey = \"device.key\"",
            ),
            "insecure_software_key is for development",
        ),
        (
            bundle::CONFIG,
            CONFIG.replace("[camera]", "[camera]\nwidth = \"wide\""),
            "sealcamd.toml:",
        ),
        (
            bundle::CONFIG,
            CONFIG.replace("set = ", "public_keys = [\"a.pub\"]\nset = "),
            "recipients.public_keys is for development",
        ),
    ];
    for (file, contents, want) in cases {
        let err = refusal(file, &contents);
        assert!(err.contains(want), "{file}: {err:?} lacks {want:?}");
    }
}

#[test]
fn a_missing_or_oversized_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), None);
    std::fs::remove_file(dir.path().join(bundle::OWNER)).unwrap();
    let err = check(dir.path()).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("owner.pub"), "{err}");

    write_bundle(dir.path(), None);
    let big = vec![b'a'; bundle::MAX_FILE_BYTES as usize + 1];
    std::fs::write(dir.path().join(bundle::RECIPIENTS), big).unwrap();
    let err = check(dir.path()).map(|_| ()).unwrap_err();
    assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
}
