//! The API's routes, decoded once from a request's method and path into a
//! [`Route`] that both dispatch and the audit record use
//! (`docs/protocol.md`).

use axum::http::{Method, StatusCode};
use sealcam_format::Name;
use sealcam_transport::Role;

use super::error::ApiError;

/// What a request asks for, with its names checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `PUT /v1/fragments/{device}/{stream}/{sequence}`
    Upload {
        device: Name,
        stream: Name,
        sequence: u64,
    },
    /// `GET /v1/streams`
    ListStreams,
    /// `GET /v1/streams/{device}/{stream}/fragments`
    ListFragments { device: Name, stream: Name },
    /// `GET /v1/streams/{device}/{stream}/fragments/{sequence}`
    ReadFragment {
        device: Name,
        stream: Name,
        sequence: u64,
    },
    /// `GET /v1/devices/{device}/certificate`
    DeviceCertificate { device: Name },
    /// `POST /v1/renew`
    Renew,
    /// `GET /v1/whoami`
    WhoAmI,
    /// `POST /v1/enroll` (the enrollment port only)
    Enroll,
}

/// The action a request is audited and counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Upload,
    List,
    Read,
    ReadCertificate,
    Renew,
    WhoAmI,
    Enroll,
    /// A request for no known route.
    Request,
}

impl Action {
    /// The name in the audit trail and the refusal metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Upload => "upload",
            Action::List => "list",
            Action::Read => "read",
            Action::ReadCertificate => "read-certificate",
            Action::Renew => "renew",
            Action::WhoAmI => "whoami",
            Action::Enroll => "enroll",
            Action::Request => "request",
        }
    }

    /// The role a peer must have to ask for this, and what it is refused
    /// when it has not ("... may not upload fragments").
    pub fn required_role(self) -> Option<(Role, &'static str)> {
        match self {
            Action::Upload => Some((Role::Device, "upload fragments")),
            Action::List | Action::Read => Some((Role::Consumer, "read streams")),
            Action::ReadCertificate => Some((Role::Consumer, "read device certificates")),
            Action::Renew => Some((Role::Device, "renew certificates")),
            Action::WhoAmI | Action::Enroll | Action::Request => None,
        }
    }
}

/// A request that names no route, or a route with a bad name or number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (`404`).
    Unknown { target: String },
    /// A known path asked with another method (`405`).
    Method { target: String },
    /// A known route whose device, stream or sequence does not parse (`400`).
    Malformed {
        action: Action,
        target: String,
        reason: String,
    },
}

impl RouteError {
    /// The action and target it is audited under.
    pub fn audited(&self) -> (Action, Option<String>) {
        match self {
            RouteError::Unknown { target } | RouteError::Method { target } => {
                (Action::Request, Some(target.clone()))
            }
            RouteError::Malformed { action, target, .. } => (*action, Some(target.clone())),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::Unknown { .. } => ApiError::new(StatusCode::NOT_FOUND, "no such route"),
            RouteError::Method { .. } => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            ),
            RouteError::Malformed { reason, .. } => ApiError::new(StatusCode::BAD_REQUEST, reason),
        }
    }
}

impl Route {
    /// Decodes a request's method and path (percent-decoding each segment).
    pub fn decode(method: &Method, path: &str) -> Result<Route, RouteError> {
        let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        // A GET route also answers HEAD, as axum's `get` does.
        let get = *method == Method::GET || *method == Method::HEAD;
        let (action, expected) = match raw.as_slice() {
            ["v1", "fragments", _, _, _] => (Action::Upload, *method == Method::PUT),
            ["v1", "streams"] | ["v1", "streams", _, _, "fragments"] => (Action::List, get),
            ["v1", "streams", _, _, "fragments", _] => (Action::Read, get),
            ["v1", "devices", _, "certificate"] => (Action::ReadCertificate, get),
            ["v1", "renew"] => (Action::Renew, *method == Method::POST),
            ["v1", "whoami"] => (Action::WhoAmI, get),
            ["v1", "enroll"] => (Action::Enroll, *method == Method::POST),
            _ => {
                return Err(RouteError::Unknown {
                    target: shown(method, path),
                })
            }
        };
        if !expected {
            return Err(RouteError::Method {
                target: shown(method, path),
            });
        }
        let malformed = |reason: String| RouteError::Malformed {
            action,
            target: raw[2..]
                .iter()
                .filter(|s| **s != "fragments" && **s != "certificate")
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
            reason,
        };
        let name = |i: usize, what: &str| {
            let decoded = percent_encoding::percent_decode_str(raw[i])
                .decode_utf8()
                .map_err(|e| malformed(format!("{what}: {e}")))?;
            Name::new(&decoded).map_err(|e| malformed(format!("{what}: {e}")))
        };
        let sequence = |i: usize| {
            raw[i]
                .parse::<u64>()
                .map_err(|e| malformed(format!("sequence {:?}: {e}", raw[i])))
        };
        Ok(match (action, raw.len()) {
            (Action::Upload, _) => Route::Upload {
                device: name(2, "device")?,
                stream: name(3, "stream")?,
                sequence: sequence(4)?,
            },
            (Action::List, 2) => Route::ListStreams,
            (Action::List, _) => Route::ListFragments {
                device: name(2, "device")?,
                stream: name(3, "stream")?,
            },
            (Action::Read, _) => Route::ReadFragment {
                device: name(2, "device")?,
                stream: name(3, "stream")?,
                sequence: sequence(5)?,
            },
            (Action::ReadCertificate, _) => Route::DeviceCertificate {
                device: name(2, "device")?,
            },
            (Action::Renew, _) => Route::Renew,
            (Action::WhoAmI, _) => Route::WhoAmI,
            _ => Route::Enroll,
        })
    }

    pub fn action(&self) -> Action {
        match self {
            Route::Upload { .. } => Action::Upload,
            Route::ListStreams | Route::ListFragments { .. } => Action::List,
            Route::ReadFragment { .. } => Action::Read,
            Route::DeviceCertificate { .. } => Action::ReadCertificate,
            Route::Renew => Action::Renew,
            Route::WhoAmI => Action::WhoAmI,
            Route::Enroll => Action::Enroll,
        }
    }

    /// What the audit trail names as the request's target.
    pub fn target(&self) -> Option<String> {
        match self {
            Route::Upload {
                device,
                stream,
                sequence,
            }
            | Route::ReadFragment {
                device,
                stream,
                sequence,
            } => Some(format!("{device}/{stream}/{sequence}")),
            Route::ListFragments { device, stream } => Some(format!("{device}/{stream}")),
            Route::DeviceCertificate { device } => Some(device.to_string()),
            Route::ListStreams | Route::Renew | Route::WhoAmI | Route::Enroll => None,
        }
    }
}

/// A request for no route, as the audit trail shows it (the path cut at
/// 200 characters).
fn shown(method: &Method, path: &str) -> String {
    let path: String = path.chars().take(200).collect();
    format!("{method} {path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn decode(method: Method, path: &str) -> Result<Route, RouteError> {
        Route::decode(&method, path)
    }

    #[test]
    fn every_route_decodes() {
        let cases = [
            (
                Method::PUT,
                "/v1/fragments/cam1/front/7",
                Route::Upload {
                    device: n("cam1"),
                    stream: n("front"),
                    sequence: 7,
                },
                "upload",
                Some("cam1/front/7"),
            ),
            (Method::GET, "/v1/streams", Route::ListStreams, "list", None),
            (
                Method::GET,
                "/v1/streams/cam1/front/fragments",
                Route::ListFragments {
                    device: n("cam1"),
                    stream: n("front"),
                },
                "list",
                Some("cam1/front"),
            ),
            (
                Method::GET,
                "/v1/streams/cam1/front/fragments/0",
                Route::ReadFragment {
                    device: n("cam1"),
                    stream: n("front"),
                    sequence: 0,
                },
                "read",
                Some("cam1/front/0"),
            ),
            (
                Method::GET,
                "/v1/devices/cam1/certificate",
                Route::DeviceCertificate { device: n("cam1") },
                "read-certificate",
                Some("cam1"),
            ),
            (Method::POST, "/v1/renew", Route::Renew, "renew", None),
            (Method::GET, "/v1/whoami", Route::WhoAmI, "whoami", None),
            (Method::HEAD, "/v1/whoami", Route::WhoAmI, "whoami", None),
            (Method::POST, "/v1/enroll", Route::Enroll, "enroll", None),
        ];
        for (method, path, route, action, target) in cases {
            let decoded = decode(method, path).unwrap();
            assert_eq!(decoded, route, "{path}");
            assert_eq!(decoded.action().as_str(), action, "{path}");
            assert_eq!(decoded.target().as_deref(), target, "{path}");
        }
    }

    #[test]
    fn bad_names_and_numbers_are_malformed_under_their_action() {
        for (method, path, action, target) in [
            (
                Method::PUT,
                "/v1/fragments/cam1/..%2F..%2Fetc/0",
                Action::Upload,
                "cam1/..%2F..%2Fetc/0",
            ),
            (
                Method::PUT,
                "/v1/fragments/cam1/.hidden/0",
                Action::Upload,
                "cam1/.hidden/0",
            ),
            (
                Method::PUT,
                "/v1/fragments/cam1/a%20b/0",
                Action::Upload,
                "cam1/a%20b/0",
            ),
            (
                Method::PUT,
                "/v1/fragments/cam1/front/x",
                Action::Upload,
                "cam1/front/x",
            ),
            (
                Method::GET,
                "/v1/streams/../front/fragments",
                Action::List,
                "../front",
            ),
            (
                Method::GET,
                "/v1/streams/cam1/front/fragments/-1",
                Action::Read,
                "cam1/front/-1",
            ),
            (
                Method::GET,
                "/v1/devices/%ff/certificate",
                Action::ReadCertificate,
                "%ff",
            ),
        ] {
            let e = decode(method, path).unwrap_err();
            assert_eq!(e.audited(), (action, Some(target.to_owned())), "{path}");
            let refusal = ApiError::from(e);
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(refusal.code, "malformed", "{path}");
        }
        let e = decode(Method::PUT, "/v1/fragments/cam1/a%20b/0").unwrap_err();
        assert!(ApiError::from(e).reason.contains("invalid name"));
    }

    #[test]
    fn unknown_paths_and_methods_are_refused_as_requests() {
        for path in [
            "/",
            "/v1",
            "/v1/streams/",
            "/v2/streams",
            "/v1/fragments/cam1/front",
            "/v1/streams/cam1/front/fragment",
            "//v1/streams",
        ] {
            let e = decode(Method::GET, path).unwrap_err();
            assert_eq!(
                e.audited(),
                (Action::Request, Some(format!("GET {path}"))),
                "{path}"
            );
            assert_eq!(ApiError::from(e).status, StatusCode::NOT_FOUND);
        }
        for (method, path) in [
            (Method::GET, "/v1/fragments/cam1/front/0"),
            (Method::POST, "/v1/streams"),
            (Method::GET, "/v1/renew"),
            (Method::GET, "/v1/enroll"),
            (Method::DELETE, "/v1/streams/cam1/front/fragments/0"),
        ] {
            let e = decode(method.clone(), path).unwrap_err();
            assert_eq!(e.audited().0, Action::Request, "{method} {path}");
            let refusal = ApiError::from(e);
            assert_eq!(refusal.status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(refusal.code, "method-not-allowed");
        }
        let long = format!("/{}", "x".repeat(500));
        let (_, target) = decode(Method::GET, &long).unwrap_err().audited();
        assert_eq!(target.map(|t| t.len()), Some("GET ".len() + 200));
    }

    #[test]
    fn roles_follow_the_action() {
        assert_eq!(
            Action::Upload.required_role(),
            Some((Role::Device, "upload fragments"))
        );
        assert_eq!(
            Action::Read.required_role().map(|r| r.0),
            Some(Role::Consumer)
        );
        assert_eq!(Action::WhoAmI.required_role(), None);
        assert_eq!(Action::Enroll.required_role(), None);
    }
}
