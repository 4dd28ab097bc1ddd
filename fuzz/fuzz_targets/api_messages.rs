//! Fuzzes what the ingest and its clients decode from each other: a
//! request's method and path (`Route::decode`), refusal bodies and the JSON
//! bodies of requests and answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealcam_api::{
    CertificateEntry, CertificateResponse, ChallengeRequest, ChallengeResponse, EnrollRequest,
    ErrorBody, FragmentEntry, PendingResponse, RenewRequest, RosterReceipt, RosterUpload, Route,
    UpdateOffer, WhoAmI,
};

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "HEAD", "DELETE"];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if let Ok(path) = std::str::from_utf8(rest) {
        let method = METHODS[usize::from(first) % METHODS.len()];
        if let Ok(method) = http::Method::from_bytes(method.as_bytes()) {
            if let Ok(route) = Route::decode(&method, path) {
                // What decodes encodes to a path that decodes the same.
                assert_eq!(Route::decode(&route.method(), &route.path()).ok(), Some(route));
            }
        }
        let _ = ErrorBody::from_response_text(path);
        // A camera's update report, as the ingest keeps it; versions as
        // both sides compare them.
        let kept = sealcam_api::update::clean_outcome(path);
        assert!(kept.chars().count() <= sealcam_api::update::MAX_OUTCOME_LEN);
        if let Some((a, b)) = path.split_at_checked(path.len() / 2) {
            let order = sealcam_api::update::compare_versions(a, b);
            assert_eq!(order, sealcam_api::update::compare_versions(b, a).reverse());
        }
    }
    if let Ok(offer) = serde_json::from_slice::<UpdateOffer>(rest) {
        let again = serde_json::to_vec(&offer).ok();
        assert_eq!(again.and_then(|b| serde_json::from_slice(&b).ok()), Some(offer));
    }
    let _ = serde_json::from_slice::<EnrollRequest>(rest);
    if let Ok(req) = serde_json::from_slice::<EnrollRequest>(rest) {
        // What decodes encodes to a body that decodes the same.
        let again = serde_json::to_vec(&req).ok();
        assert_eq!(again.and_then(|b| serde_json::from_slice(&b).ok()), Some(req));
    }
    let _ = serde_json::from_slice::<ChallengeRequest>(rest);
    let _ = serde_json::from_slice::<ChallengeResponse>(rest);
    let _ = serde_json::from_slice::<RenewRequest>(rest);
    let _ = serde_json::from_slice::<CertificateResponse>(rest);
    let _ = serde_json::from_slice::<PendingResponse>(rest);
    let _ = serde_json::from_slice::<WhoAmI>(rest);
    let _ = serde_json::from_slice::<Vec<FragmentEntry>>(rest);
    let _ = serde_json::from_slice::<RosterUpload>(rest);
    let _ = serde_json::from_slice::<RosterReceipt>(rest);
    let _ = serde_json::from_slice::<Vec<CertificateEntry>>(rest);
});
