//! Every request the ingest answers, as one type.
//!
//! The ingest decodes a request's method and path once ([`Route::decode`]);
//! dispatch and the audit record both use the result, so there is one
//! route table. Clients build their paths from the same type
//! ([`Route::path`]).

use http::Method;
use sealcam_format::name::InvalidName;
use sealcam_format::Name;

/// A request the ingest answers (`docs/ref/protocol.md`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `PUT /v1/fragments/{device}/{stream}/{sequence}`: a device uploads.
    Upload {
        device: Name,
        stream: Name,
        sequence: u64,
    },
    /// `PUT /v1/restarts/{device}/{stream}/{first_sequence}`: a device
    /// uploads the signed record of a chain restart (a new epoch).
    UploadRestart {
        device: Name,
        stream: Name,
        first_sequence: u64,
    },
    /// `GET /v1/streams/{device}/{stream}/restarts`: a stream's chain
    /// restart records.
    ListRestarts { device: Name, stream: Name },
    /// `PUT /v1/heads/{device}/{stream}`: a device uploads its newest
    /// signed head of a stream.
    UploadHead { device: Name, stream: Name },
    /// `GET /v1/streams/{device}/{stream}/head`: the newest signed head
    /// stored for a stream.
    ReadHead { device: Name, stream: Name },
    /// `POST /v1/renew`: a device renews its own certificate.
    Renew,
    /// `GET /v1/whoami`: the caller's identity as the ingest reads it.
    WhoAmI,
    /// `GET /v1/streams`: the streams a consumer may read.
    ListStreams,
    /// `GET /v1/streams/{device}/{stream}/fragments`: a stream's fragments.
    ListFragments { device: Name, stream: Name },
    /// `GET /v1/streams/{device}/{stream}/fragments/{sequence}`: one sealed
    /// fragment.
    ReadFragment {
        device: Name,
        stream: Name,
        sequence: u64,
    },
    /// `GET /v1/devices/{device}/certificate`: a device's certificate.
    DeviceCertificate { device: Name },
    /// `GET /v1/devices/{device}/certificates`: every certificate the
    /// device has used, oldest first.
    DeviceCertificates { device: Name },
    /// `PUT /v1/rosters`: a consumer publishes an owner-signed device roster.
    PublishRoster,
    /// `GET /v1/rosters/{owner}`: the newest roster signed by the owner key
    /// with this fingerprint (64 hex digits).
    ReadRoster { owner: Name },
    /// `POST /v1/enroll` (enrollment port): a camera asks for its first
    /// certificate.
    Enroll,
    /// `POST /v1/enroll/challenge` (enrollment port): a camera with a TPM
    /// asks for the credential its attestation key must activate before
    /// it enrolls with TPM evidence.
    EnrollChallenge,
    /// `GET /v1/updates/{compatible}`: a device asks which update bundle
    /// is offered for its RAUC `compatible` (204: nothing newer).
    UpdateOffer { compatible: Name },
    /// `GET /v1/bundles/{sha256}`: a device fetches an offered bundle by
    /// its hash, with `Range` to resume.
    ReadBundle { sha256: Name },
}

/// Why a request names no [`Route`].
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No route has this path.
    #[error("no such resource")]
    NotFound,
    /// The path is a route's, the method is not.
    #[error("{method} is not allowed here; use {allowed}")]
    MethodNotAllowed {
        method: Method,
        allowed: &'static Method,
    },
    /// A device or stream name in the path is not a valid name.
    #[error(transparent)]
    BadName(#[from] InvalidName),
    /// A sequence number in the path is not a number.
    #[error(
        "invalid sequence number {given:?}: use a whole number from 0 to 18446744073709551615"
    )]
    BadSequence { given: String },
}

impl Route {
    /// Decodes a request's method and path (without its query).
    pub fn decode(method: &Method, path: &str) -> Result<Self, RouteError> {
        let segments: Vec<String> = path
            .strip_prefix('/')
            .ok_or(RouteError::NotFound)?
            .split('/')
            .map(decode_segment)
            .collect::<Result<_, _>>()?;
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        let (route, allowed) = match parts.as_slice() {
            ["v1", "fragments", d, s, n] => (
                Self::Upload {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                    sequence: sequence(n)?,
                },
                &Method::PUT,
            ),
            ["v1", "restarts", d, s, n] => (
                Self::UploadRestart {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                    first_sequence: sequence(n)?,
                },
                &Method::PUT,
            ),
            ["v1", "streams", d, s, "restarts"] => (
                Self::ListRestarts {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                },
                &Method::GET,
            ),
            ["v1", "heads", d, s] => (
                Self::UploadHead {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                },
                &Method::PUT,
            ),
            ["v1", "streams", d, s, "head"] => (
                Self::ReadHead {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                },
                &Method::GET,
            ),
            ["v1", "renew"] => (Self::Renew, &Method::POST),
            ["v1", "whoami"] => (Self::WhoAmI, &Method::GET),
            ["v1", "enroll"] => (Self::Enroll, &Method::POST),
            ["v1", "enroll", "challenge"] => (Self::EnrollChallenge, &Method::POST),
            ["v1", "streams"] => (Self::ListStreams, &Method::GET),
            ["v1", "streams", d, s, "fragments"] => (
                Self::ListFragments {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                },
                &Method::GET,
            ),
            ["v1", "streams", d, s, "fragments", n] => (
                Self::ReadFragment {
                    device: Name::new(d)?,
                    stream: Name::new(s)?,
                    sequence: sequence(n)?,
                },
                &Method::GET,
            ),
            ["v1", "devices", d, "certificate"] => (
                Self::DeviceCertificate {
                    device: Name::new(d)?,
                },
                &Method::GET,
            ),
            ["v1", "devices", d, "certificates"] => (
                Self::DeviceCertificates {
                    device: Name::new(d)?,
                },
                &Method::GET,
            ),
            ["v1", "rosters"] => (Self::PublishRoster, &Method::PUT),
            ["v1", "rosters", o] => (
                Self::ReadRoster {
                    owner: Name::new(o)?,
                },
                &Method::GET,
            ),
            ["v1", "updates", c] => (
                Self::UpdateOffer {
                    compatible: Name::new(c)?,
                },
                &Method::GET,
            ),
            ["v1", "bundles", h] if crate::update::valid_sha256(h) => (
                Self::ReadBundle {
                    sha256: Name::new(h)?,
                },
                &Method::GET,
            ),
            ["v1", "bundles", h] => {
                return Err(RouteError::BadName(InvalidName {
                    given: (*h).to_owned(),
                }))
            }
            _ => return Err(RouteError::NotFound),
        };
        // HEAD is answered wherever GET is.
        if method == allowed || (method == Method::HEAD && allowed == Method::GET) {
            Ok(route)
        } else {
            Err(RouteError::MethodNotAllowed {
                method: method.clone(),
                allowed,
            })
        }
    }

    /// The method a client sends for this route.
    pub fn method(&self) -> Method {
        match self {
            Self::Upload { .. }
            | Self::UploadRestart { .. }
            | Self::UploadHead { .. }
            | Self::PublishRoster => Method::PUT,
            Self::Renew | Self::Enroll | Self::EnrollChallenge => Method::POST,
            Self::WhoAmI
            | Self::ListStreams
            | Self::ListFragments { .. }
            | Self::ListRestarts { .. }
            | Self::ReadFragment { .. }
            | Self::ReadHead { .. }
            | Self::DeviceCertificate { .. }
            | Self::DeviceCertificates { .. }
            | Self::ReadRoster { .. }
            | Self::UpdateOffer { .. }
            | Self::ReadBundle { .. } => Method::GET,
        }
    }

    /// The path a client requests for this route.
    pub fn path(&self) -> String {
        match self {
            Self::Upload {
                device,
                stream,
                sequence,
            } => format!("/v1/fragments/{device}/{stream}/{sequence}"),
            Self::UploadRestart {
                device,
                stream,
                first_sequence,
            } => format!("/v1/restarts/{device}/{stream}/{first_sequence}"),
            Self::ListRestarts { device, stream } => {
                format!("/v1/streams/{device}/{stream}/restarts")
            }
            Self::UploadHead { device, stream } => format!("/v1/heads/{device}/{stream}"),
            Self::ReadHead { device, stream } => format!("/v1/streams/{device}/{stream}/head"),
            Self::Renew => "/v1/renew".into(),
            Self::WhoAmI => "/v1/whoami".into(),
            Self::Enroll => "/v1/enroll".into(),
            Self::EnrollChallenge => "/v1/enroll/challenge".into(),
            Self::ListStreams => "/v1/streams".into(),
            Self::ListFragments { device, stream } => {
                format!("/v1/streams/{device}/{stream}/fragments")
            }
            Self::ReadFragment {
                device,
                stream,
                sequence,
            } => format!("/v1/streams/{device}/{stream}/fragments/{sequence}"),
            Self::DeviceCertificate { device } => format!("/v1/devices/{device}/certificate"),
            Self::DeviceCertificates { device } => format!("/v1/devices/{device}/certificates"),
            Self::PublishRoster => "/v1/rosters".into(),
            Self::ReadRoster { owner } => format!("/v1/rosters/{owner}"),
            Self::UpdateOffer { compatible } => format!("/v1/updates/{compatible}"),
            Self::ReadBundle { sha256 } => format!("/v1/bundles/{sha256}"),
        }
    }

    /// The action the audit trail and the metrics name this request by.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Upload { .. } => "upload",
            Self::UploadRestart { .. } => "upload-restart",
            Self::ListRestarts { .. } => "list-restarts",
            Self::UploadHead { .. } => "upload-head",
            Self::ReadHead { .. } => "read-head",
            Self::ListStreams | Self::ListFragments { .. } => "list",
            Self::ReadFragment { .. } => "read",
            Self::DeviceCertificate { .. } => "read-certificate",
            Self::DeviceCertificates { .. } => "read-certificates",
            Self::PublishRoster => "publish-roster",
            Self::ReadRoster { .. } => "read-roster",
            Self::Renew => "renew",
            Self::WhoAmI => "whoami",
            Self::Enroll => "enroll",
            Self::EnrollChallenge => "enroll-challenge",
            Self::UpdateOffer { .. } => "update-check",
            Self::ReadBundle { .. } => "read-bundle",
        }
    }

    /// What the request acts on, as the audit trail records it
    /// (`cam1/front/12`), where it names something.
    pub fn target(&self) -> Option<String> {
        match self {
            Self::Upload {
                device,
                stream,
                sequence,
            }
            | Self::ReadFragment {
                device,
                stream,
                sequence,
            } => Some(format!("{device}/{stream}/{sequence}")),
            Self::UploadRestart {
                device,
                stream,
                first_sequence,
            } => Some(format!("{device}/{stream}/{first_sequence}")),
            Self::ListFragments { device, stream }
            | Self::ListRestarts { device, stream }
            | Self::UploadHead { device, stream }
            | Self::ReadHead { device, stream } => Some(format!("{device}/{stream}")),
            Self::DeviceCertificate { device } | Self::DeviceCertificates { device } => {
                Some(device.to_string())
            }
            Self::ReadRoster { owner } => Some(owner.to_string()),
            Self::UpdateOffer { compatible } => Some(compatible.to_string()),
            Self::ReadBundle { sha256 } => Some(sha256.to_string()),
            Self::Renew
            | Self::WhoAmI
            | Self::Enroll
            | Self::EnrollChallenge
            | Self::ListStreams
            | Self::PublishRoster => None,
        }
    }
}

/// A path segment with its percent-encoding undone, as HTTP servers
/// present them.
fn decode_segment(segment: &str) -> Result<String, RouteError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            RouteError::BadName(InvalidName {
                given: segment.to_owned(),
            })
        })
}

fn sequence(s: &str) -> Result<u64, RouteError> {
    s.parse().map_err(|_| RouteError::BadSequence {
        given: s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn every_route() -> Vec<Route> {
        vec![
            Route::Upload {
                device: name("cam1"),
                stream: name("front"),
                sequence: 12,
            },
            Route::UploadRestart {
                device: name("cam1"),
                stream: name("front"),
                first_sequence: 1 << 50,
            },
            Route::ListRestarts {
                device: name("cam1"),
                stream: name("front"),
            },
            Route::UploadHead {
                device: name("cam1"),
                stream: name("front"),
            },
            Route::ReadHead {
                device: name("cam1"),
                stream: name("front"),
            },
            Route::Renew,
            Route::WhoAmI,
            Route::Enroll,
            Route::EnrollChallenge,
            Route::ListStreams,
            Route::ListFragments {
                device: name("cam1"),
                stream: name("front"),
            },
            Route::ReadFragment {
                device: name("cam1"),
                stream: name("front"),
                sequence: u64::MAX,
            },
            Route::DeviceCertificate {
                device: name("cam-2.b_c"),
            },
            Route::DeviceCertificates {
                device: name("cam1"),
            },
            Route::PublishRoster,
            Route::ReadRoster {
                owner: name(&"ab".repeat(32)),
            },
            Route::UpdateOffer {
                compatible: name("sealcam-qemu-amd64"),
            },
            Route::ReadBundle {
                sha256: name(&"cd".repeat(32)),
            },
        ]
    }

    #[test]
    fn every_route_decodes_from_what_a_client_sends() {
        for route in every_route() {
            let decoded = Route::decode(&route.method(), &route.path()).unwrap();
            assert_eq!(decoded, route);
        }
    }

    #[test]
    fn audit_names_are_the_documented_ones() {
        let named: Vec<(&str, Option<String>)> = every_route()
            .iter()
            .map(|r| (r.action(), r.target()))
            .collect();
        assert_eq!(
            named,
            vec![
                ("upload", Some("cam1/front/12".into())),
                ("upload-restart", Some(format!("cam1/front/{}", 1u64 << 50))),
                ("list-restarts", Some("cam1/front".into())),
                ("upload-head", Some("cam1/front".into())),
                ("read-head", Some("cam1/front".into())),
                ("renew", None),
                ("whoami", None),
                ("enroll", None),
                ("enroll-challenge", None),
                ("list", None),
                ("list", Some("cam1/front".into())),
                ("read", Some(format!("cam1/front/{}", u64::MAX))),
                ("read-certificate", Some("cam-2.b_c".into())),
                ("read-certificates", Some("cam1".into())),
                ("publish-roster", None),
                ("read-roster", Some("ab".repeat(32))),
                ("update-check", Some("sealcam-qemu-amd64".into())),
                ("read-bundle", Some("cd".repeat(32))),
            ]
        );
    }

    #[test]
    fn a_wrong_method_is_told_the_right_one() {
        let err = Route::decode(&Method::GET, "/v1/fragments/cam1/front/1").unwrap_err();
        assert!(matches!(
            err,
            RouteError::MethodNotAllowed { allowed, .. } if allowed == Method::PUT
        ));
        assert!(Route::decode(&Method::HEAD, "/v1/streams").is_ok());
    }

    #[test]
    fn bad_names_and_sequences_are_refused_by_what_is_wrong() {
        for path in [
            "/v1/streams/../front/fragments",
            "/v1/streams/.x/front/fragments",
            "/v1/streams/cam%201/front/fragments",
            "/v1/streams/cam1/%ff/fragments",
            "/v1/devices//certificate",
        ] {
            let err = Route::decode(&Method::GET, path).unwrap_err();
            assert!(matches!(err, RouteError::BadName(_)), "{path}: {err:?}");
        }
        for path in [
            "/v1/streams/cam1/front/fragments/-1",
            "/v1/streams/cam1/front/fragments/x",
            "/v1/streams/cam1/front/fragments/18446744073709551616",
        ] {
            let err = Route::decode(&Method::GET, path).unwrap_err();
            assert!(
                matches!(err, RouteError::BadSequence { .. }),
                "{path}: {err:?}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "",
            "v1/streams",
            "/",
            "/v2/streams",
            "/v1/streams/",
            "/v1/whoami/x",
        ] {
            let err = Route::decode(&Method::GET, path).unwrap_err();
            assert!(matches!(err, RouteError::NotFound), "{path:?}: {err:?}");
        }
    }

    #[test]
    fn percent_encoded_names_decode_as_servers_present_them() {
        let route = Route::decode(&Method::GET, "/v1/devices/cam%31/certificate").unwrap();
        assert_eq!(
            route,
            Route::DeviceCertificate {
                device: name("cam1")
            }
        );
    }

    proptest! {
        #[test]
        fn decoding_any_path_never_panics(method in "(GET|PUT|POST|HEAD|DELETE)", path in "\\PC{0,80}") {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let _ = Route::decode(&method, &path);
        }

        #[test]
        fn any_route_with_valid_names_round_trips(
            device in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
            stream in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
            sequence in any::<u64>(),
        ) {
            let route = Route::ReadFragment { device: name(&device), stream: name(&stream), sequence };
            prop_assert_eq!(Route::decode(&route.method(), &route.path()).unwrap(), route);
        }

        #[test]
        fn roster_and_certificate_history_routes_round_trip(
            device in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
            owner in "[0-9a-f]{64}",
        ) {
            for route in [
                Route::DeviceCertificates { device: name(&device) },
                Route::ReadRoster { owner: name(&owner) },
                Route::PublishRoster,
            ] {
                prop_assert_eq!(Route::decode(&route.method(), &route.path()).unwrap(), route);
            }
        }
    }
}
