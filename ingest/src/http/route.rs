//! What the ingest adds to the API's routes ([`sealcam_api::Route`],
//! decoded once per request): the role each asks of the peer, and how a
//! request that names no valid route is audited and answered.

use axum::http::{Method, StatusCode};
use sealcam_api::{Route, RouteError};
use sealcam_format::Name;
use sealcam_transport::Role;

use super::error::ApiError;

/// The role a peer must have to ask for a route, and what it is refused
/// when it has not ("... may not upload fragments").
pub fn required_role(route: &Route) -> Option<(Role, &'static str)> {
    match route {
        Route::Upload { .. } => Some((Role::Device, "upload fragments")),
        Route::UploadRestart { .. } => Some((Role::Device, "upload restart records")),
        Route::UploadHead { .. } => Some((Role::Device, "upload heads")),
        Route::ListStreams
        | Route::ListFragments { .. }
        | Route::ListRestarts { .. }
        | Route::ReadFragment { .. }
        | Route::ReadHead { .. } => Some((Role::Consumer, "read streams")),
        Route::DeviceCertificate { .. } | Route::DeviceCertificates { .. } => {
            Some((Role::Consumer, "read device certificates"))
        }
        Route::PublishRoster => Some((Role::Consumer, "publish rosters")),
        Route::ReadRoster { .. } => Some((Role::Consumer, "read rosters")),
        Route::Renew => Some((Role::Device, "renew certificates")),
        Route::UpdateOffer { .. } | Route::ReadBundle { .. } => {
            Some((Role::Device, "fetch update bundles"))
        }
        Route::WhoAmI | Route::Enroll | Route::EnrollChallenge => None,
    }
}

/// A request as the audit trail and the metrics name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audited {
    /// The route's action, or `request` for a path of no route.
    pub action: &'static str,
    pub target: Option<String>,
    /// The route the path has the shape of, where its names or number do
    /// not parse (names and numbers put in their place): its role is asked
    /// before the refusal.
    pub shape: Option<Route>,
}

/// Names a decoded request for the audit trail. A route whose names or
/// number do not parse is audited under its action (`upload` for `PUT
/// /v1/fragments/cam1/a%20b/0`) with the names as sent; a request for no
/// route under `request`, with its method and path.
pub fn audited(method: &Method, path: &str, decoded: &Result<Route, RouteError>) -> Audited {
    match decoded {
        Ok(route) => Audited {
            action: route.action(),
            target: route.target(),
            shape: None,
        },
        Err(e) => match shape_of(method, path, e) {
            Some(shape) => Audited {
                action: shape.action(),
                target: Some(names_as_sent(path)),
                shape: Some(shape),
            },
            None => Audited {
                action: "request",
                target: Some(shown(method, path)),
                shape: None,
            },
        },
    }
}

/// The route a path would be with its bad names and number replaced by
/// good ones: the route whose shape it has.
fn shape_of(method: &Method, path: &str, e: &RouteError) -> Option<Route> {
    let bad_sequence = match e {
        RouteError::BadName(_) => false,
        RouteError::BadSequence { .. } => true,
        RouteError::NotFound | RouteError::MethodNotAllowed { .. } => return None,
    };
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let last = segments.len().checked_sub(1)?;
    let fixed: Vec<&str> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let decoded = percent_encoding::percent_decode_str(s).decode_utf8();
            let good = decoded.is_ok_and(|d| Name::new(&d).is_ok());
            // A sequence number is a request's last segment.
            if !good || (bad_sequence && i == last) {
                "0"
            } else {
                s
            }
        })
        .collect();
    Route::decode(method, &format!("/{}", fixed.join("/"))).ok()
}

/// The names a route's path carries, as sent: its segments after
/// `/v1/<collection>/`, without the fixed words.
fn names_as_sent(path: &str) -> String {
    path.split('/')
        .skip(3)
        .filter(|s| !matches!(*s, "fragments" | "certificate" | "certificates"))
        .collect::<Vec<_>>()
        .join("/")
}

/// A request for no route, as the audit trail shows it (the path cut at
/// 200 characters).
fn shown(method: &Method, path: &str) -> String {
    let path: String = path.chars().take(200).collect();
    format!("{method} {path}")
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let status = match e {
            RouteError::NotFound => StatusCode::NOT_FOUND,
            RouteError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RouteError::BadName(_) | RouteError::BadSequence { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealcam_api::ErrorCode;

    fn audit(method: Method, path: &str) -> Audited {
        audited(&method, path, &Route::decode(&method, path))
    }

    #[test]
    fn every_route_is_audited_by_its_action_and_target() {
        for (method, path, action, target) in [
            (
                Method::PUT,
                "/v1/fragments/cam1/front/7",
                "upload",
                Some("cam1/front/7"),
            ),
            (Method::GET, "/v1/streams", "list", None),
            (
                Method::GET,
                "/v1/streams/cam1/front/fragments",
                "list",
                Some("cam1/front"),
            ),
            (
                Method::GET,
                "/v1/streams/cam1/front/fragments/0",
                "read",
                Some("cam1/front/0"),
            ),
            (
                Method::GET,
                "/v1/devices/cam1/certificate",
                "read-certificate",
                Some("cam1"),
            ),
            (Method::POST, "/v1/renew", "renew", None),
            (Method::GET, "/v1/whoami", "whoami", None),
            (Method::HEAD, "/v1/whoami", "whoami", None),
            (Method::POST, "/v1/enroll", "enroll", None),
        ] {
            let a = audit(method, path);
            assert_eq!((a.action, a.target.as_deref()), (action, target), "{path}");
            assert_eq!(a.shape, None, "{path}");
        }
    }

    #[test]
    fn bad_names_and_numbers_are_malformed_under_their_action() {
        for (method, path, action, target, role) in [
            (
                Method::PUT,
                "/v1/fragments/cam1/..%2F..%2Fetc/0",
                "upload",
                "cam1/..%2F..%2Fetc/0",
                Role::Device,
            ),
            (
                Method::PUT,
                "/v1/fragments/cam1/.hidden/0",
                "upload",
                "cam1/.hidden/0",
                Role::Device,
            ),
            (
                Method::PUT,
                "/v1/fragments/cam1/a%20b/0",
                "upload",
                "cam1/a%20b/0",
                Role::Device,
            ),
            (
                Method::PUT,
                "/v1/fragments/cam1/front/x",
                "upload",
                "cam1/front/x",
                Role::Device,
            ),
            (
                Method::GET,
                "/v1/streams/../front/fragments",
                "list",
                "../front",
                Role::Consumer,
            ),
            (
                Method::GET,
                "/v1/streams/cam1/front/fragments/-1",
                "read",
                "cam1/front/-1",
                Role::Consumer,
            ),
            (
                Method::GET,
                "/v1/devices/%ff/certificate",
                "read-certificate",
                "%ff",
                Role::Consumer,
            ),
        ] {
            let decoded = Route::decode(&method, path);
            let a = audited(&method, path, &decoded);
            assert_eq!(
                (a.action, a.target.as_deref()),
                (action, Some(target)),
                "{path}"
            );
            let shape = a.shape.unwrap_or_else(|| panic!("{path}: no shape"));
            assert_eq!(required_role(&shape).map(|r| r.0), Some(role), "{path}");
            let refusal = ApiError::from(decoded.unwrap_err());
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(refusal.code, ErrorCode::Malformed, "{path}");
        }
        let e = Route::decode(&Method::PUT, "/v1/fragments/cam1/a%20b/0").unwrap_err();
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
            let a = audit(Method::GET, path);
            assert_eq!(
                (a.action, a.target),
                ("request", Some(format!("GET {path}"))),
                "{path}"
            );
            let e = Route::decode(&Method::GET, path).unwrap_err();
            assert_eq!(ApiError::from(e).status, StatusCode::NOT_FOUND, "{path}");
        }
        for (method, path) in [
            (Method::GET, "/v1/fragments/cam1/front/0"),
            (Method::POST, "/v1/streams"),
            (Method::GET, "/v1/renew"),
            (Method::GET, "/v1/enroll"),
            (Method::DELETE, "/v1/streams/cam1/front/fragments/0"),
        ] {
            assert_eq!(
                audit(method.clone(), path).action,
                "request",
                "{method} {path}"
            );
            let refusal = ApiError::from(Route::decode(&method, path).unwrap_err());
            assert_eq!(refusal.status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(refusal.code, ErrorCode::MethodNotAllowed);
        }
        let long = format!("/{}", "x".repeat(500));
        let target = audit(Method::GET, &long).target;
        assert_eq!(target.map(|t| t.len()), Some("GET ".len() + 200));
    }

    #[test]
    fn roles_follow_the_route() {
        let upload = Route::decode(&Method::PUT, "/v1/fragments/cam1/front/0").unwrap();
        assert_eq!(
            required_role(&upload),
            Some((Role::Device, "upload fragments"))
        );
        assert_eq!(required_role(&Route::WhoAmI), None);
        assert_eq!(required_role(&Route::Enroll), None);
        assert_eq!(
            required_role(&Route::Renew).map(|r| r.0),
            Some(Role::Device)
        );
    }
}
