//! A hostile anonymous client for the tests: floods an ingest's enrollment
//! port with enrollment requests without a token, each a valid CSR for a
//! fresh key (so that each would be a new pending request), and prints how
//! they were answered: `STATUS COUNT` per line, then `retry-after COUNT`,
//! how many refusals said when to ask again.
//!
//! `enroll-flood URL CA_CERT COUNT NAME...`: the CSRs name the devices in
//! turn (e.g. an honest camera's name, to try to replace its request).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, ca, count, names @ ..] = args.as_slice() else {
        panic!("usage: enroll-flood URL CA_CERT COUNT NAME...");
    };
    assert!(!names.is_empty(), "name at least one device");
    let count: usize = count.parse().unwrap();
    let roots = sealcam_transport::pem::load_roots(Path::new(ca)).unwrap();
    let cfg = sealcam_transport::tls::enrollment_client_config(roots).unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap();
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    let mut retry_after = 0;
    for i in 0..count {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[i % names.len()].as_str());
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        // Every other one with an unparseable "EK certificate": it must be
        // refused, and never recorded.
        let body = if i % 2 == 1 {
            serde_json::json!({ "csr": csr, "ek_certificate": "bm90IGEgY2VydA==" })
        } else {
            serde_json::json!({ "csr": csr })
        };
        let status = match client.post(format!("{url}/v1/enroll")).json(&body).send() {
            Ok(r) => {
                retry_after += usize::from(r.headers().contains_key("retry-after"));
                r.status().as_u16()
            }
            Err(_) => 0,
        };
        *answers.entry(status).or_default() += 1;
    }
    for (status, n) in answers {
        println!("{status} {n}");
    }
    println!("retry-after {retry_after}");
}
