//! Reading the ingest's answers with a ceiling. An answer to the camera is
//! a small JSON object or a certificate; a server that streams gigabytes
//! instead must not be able to exhaust the camera's memory (a camera that
//! dies that way would declare a crash gap, which no one would blame on
//! the server).

/// The most bytes of one answer the camera reads.
pub const MAX_ANSWER: usize = 1 << 20;

/// The answer's body as text, at most [`MAX_ANSWER`] bytes: the rest is
/// not read (a truncated answer then fails to parse, with the usual
/// message). A body that breaks off early is what arrived.
pub async fn text(mut resp: reqwest::Response) -> String {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ANSWER - out.len();
        if chunk.len() >= room {
            out.extend_from_slice(&chunk[..room]);
            break;
        }
        out.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_ceiling() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
            while s.write_all(chunk.as_bytes()).is_ok() {}
        });
        let tls = sealcam_transport::tls::enrollment_client_config(rustls::RootCertStore::empty())
            .unwrap();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let resp = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(text(resp).await.len(), MAX_ANSWER);
    }
}
