//! A hostile ingest for tests: it holds the ingest's TLS key (as whoever
//! runs the ingest does), answers consumers with it, and passes their
//! requests to the real ingest, rewriting each request's path and query
//! with a function the test sets. It plays the operator who shows a viewer
//! old fragments as new ones, hides the newest, or asks the store for
//! another stream than the one requested.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use sealcam_transport::{pem, tls};

type Rewrite = Box<dyn Fn(&str) -> String + Send + Sync>;
type Alter = Box<dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync>;

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rewrite: Mutex<Rewrite>,
    alter: Mutex<Alter>,
}

/// The hostile front end, stopped on drop.
pub struct LyingIngest {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl LyingIngest {
    /// Serves with the ingest's `pki/server.crt` and `server.key` under
    /// `world`, forwarding to `upstream` (`https://...`) as the consumer
    /// whose certificate and key are `cert` and `key` (paths under
    /// `world`). Honest until [`LyingIngest::rewrite`].
    pub fn start(world: &Path, upstream: &str, cert: &str, key: &str) -> Self {
        let client_tls = tls::consumer_client_config(
            pem::load_roots(&world.join("pki/ca.crt")).unwrap(),
            pem::load_certs(&world.join(cert)).unwrap(),
            pem::load_private_key(&world.join(key)).unwrap(),
        )
        .unwrap();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls)
            .build()
            .unwrap();
        let mut server_tls = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pem::load_certs(&world.join("pki/server.crt")).unwrap(),
                pem::load_private_key(&world.join("pki/server.key")).unwrap(),
            )
            .unwrap();
        server_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            rewrite: Mutex::new(Box::new(str::to_owned)),
            alter: Mutex::new(Box::new(|_, body| body)),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        Self {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// From now on, every request's path and query (`/v1/...?after=3`) is
    /// replaced by `f`'s answer before it reaches the real ingest.
    pub fn rewrite(&self, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        *self.shared.rewrite.lock().unwrap() = Box::new(f);
    }

    /// From now on, the body of every answer is replaced by `f`'s answer,
    /// given the path and query asked (`/v1/...`) and the real body: the
    /// operator who serves altered listings or records.
    pub fn alter(&self, f: impl Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync + 'static) {
        *self.shared.alter.lock().unwrap() = Box::new(f);
    }
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let asked = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let sent = (s.rewrite.lock().unwrap())(&asked);
    let body = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let mut upstream = s
        .client
        .request(parts.method, format!("{}{sent}", s.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return Response::builder().status(502).body(Body::empty()).unwrap();
    };
    let mut out = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != http::header::TRANSFER_ENCODING
            && name != http::header::CONNECTION
            && name != http::header::CONTENT_LENGTH
        {
            out = out.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default().to_vec();
    let bytes = (s.alter.lock().unwrap())(&asked, bytes);
    out.body(Body::from(bytes)).unwrap()
}
