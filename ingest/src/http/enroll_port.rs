//! The enrollment port: anonymous clients over server-authenticated TLS,
//! each connection admitted at accept ([`super::admission`]) and served
//! with the API port's timeouts (handshake, headers, body, idle). Its
//! request body (at most [`super::enroll::ENROLL_BODY_LIMIT`]) is read here,
//! within the body timeout, so that its refusals are the documented JSON
//! errors; the request then goes to [`super::enroll`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::admission::Admission;
use super::connection::{
    accept_admitted, handshake, http_builder, Shared, TlsAcceptor, CLOSE_GRACE,
};
use super::error::ApiError;
use super::idle::{self, Activity};

/// The enrollment port: server-authenticated TLS, anonymous.
pub struct EnrollPort {
    pub listener: TcpListener,
    pub acceptor: TlsAcceptor,
    pub app: Router,
    pub admission: Arc<Admission>,
}

/// The enrollment port's accept loop: each connection admitted at accept,
/// then served with the same timeouts as the API port.
pub async fn serve_enrollment(port: EnrollPort, shared: Arc<Shared>) {
    let EnrollPort {
        listener,
        acceptor,
        app,
        admission,
    } = port;
    loop {
        let (tcp, addr, ticket) =
            accept_admitted(&listener, &admission, &shared.refusals, "enroll").await;
        let (acceptor, app, shared) = (acceptor.clone(), app.clone(), shared.clone());
        tokio::spawn(async move {
            let _ticket = ticket;
            serve_enrollment_connection(acceptor, app, shared, tcp, addr).await;
        });
    }
}

async fn serve_enrollment_connection(
    acceptor: TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
) {
    let tls = match handshake(&acceptor, tcp, shared.timeouts.handshake).await {
        Ok(tls) => tls,
        Err(refused) => {
            tracing::debug!(%addr, reason = %refused.detail, "enrollment TLS handshake refused");
            shared
                .refusals
                .refused("enroll", refused.reason, addr, Some(refused.detail));
            return;
        }
    };
    let activity = Activity::new();
    let service = {
        let (activity, shared) = (activity.clone(), shared.clone());
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let busy = activity.begin();
            let (app, shared) = (app.clone(), shared.clone());
            async move {
                let response = match enrollment_request(req, &shared).await {
                    Ok(mut req) => {
                        req.extensions_mut().insert(addr);
                        match app.oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        }
                    }
                    Err(refusal) => refusal,
                };
                Ok::<_, std::convert::Infallible>(Activity::until_sent(response, busy))
            }
        })
    };
    let builder = http_builder(shared.timeouts);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%addr, error = %e, "enrollment connection ended with an error");
            }
            return;
        }
        () = idle::idle_past(&activity, shared.timeouts.idle) => {
            conn.as_mut().graceful_shutdown();
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

/// An enrollment request with its body read: at most
/// [`super::enroll::ENROLL_BODY_LIMIT`], within the body timeout. A
/// refusal is the documented JSON error (413, 408, 400), counted; what a
/// sender of too much still sends is read (bounded) and dropped, so that
/// it reads the answer.
async fn enrollment_request(
    req: hyper::Request<hyper::body::Incoming>,
    shared: &Shared,
) -> Result<axum::extract::Request, axum::response::Response> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let limit = super::enroll::ENROLL_BODY_LIMIT;
    let (parts, body) = req.into_parts();
    let refuse = |e: ApiError| {
        shared.metrics.refused("enroll", e.code.as_str());
        e.into_response()
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("enrollment requests are at most {limit} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = axum::body::Body::new(body);
    let timeout = shared.timeouts.body;
    if declared.is_some_and(|n| n > limit as u64) {
        super::deadline::drain(body, 16 * limit as u64, timeout);
        return Err(refuse(too_large()));
    }
    let read = async {
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {e}"),
                )
            })?;
            if let Some(d) = frame.data_ref() {
                if d.len() > limit - got.len() {
                    return Err(too_large());
                }
                got.extend_from_slice(d);
            }
        }
        Ok(got)
    };
    let got = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", timeout.as_secs()),
            ))
        });
    match got {
        Ok(got) => Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(got),
        )),
        Err(e) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                super::deadline::drain(body, 16 * limit as u64, timeout);
            }
            Err(refuse(e))
        }
    }
}
