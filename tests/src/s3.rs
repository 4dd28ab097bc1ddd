//! A real S3-compatible server per test: `s3s-fs` (from crates.io, installed
//! by `scripts/install-deps`) on a loopback port, storing objects as files
//! under its own directory, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "sealcam-test";
pub const SECRET_KEY: &str = "sealcam-test-secret";

pub struct S3Server {
    child: Child,
    pub port: u16,
    /// The server's root: one directory per bucket, one file per object.
    pub root: PathBuf,
}

/// Where `s3s-fs` is: `$SEALCAM_S3S_FS`, the repository's `.tools/bin`, or `PATH`.
pub fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SEALCAM_S3S_FS") {
        return PathBuf::from(p);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let local = repo.join(".tools/bin/s3s-fs");
    if local.exists() {
        return local;
    }
    PathBuf::from("s3s-fs")
}

impl S3Server {
    /// Starts a server with one empty bucket, `bucket`.
    pub fn start(root: &Path, bucket: &str) -> Self {
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(root.with_extension("log")).unwrap();
        let binary = s3s_fs_binary();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; scripts/install-deps builds it \
                     (s3s-fs 0.14.1) and links it into .tools/bin",
                    binary.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            root: root.to_owned(),
        }
    }

    /// The `[storage]` section of an ingest config for `bucket`; the secret
    /// key is written to `secret_file`.
    pub fn storage_config(&self, bucket: &str, secret_file: &Path) -> String {
        std::fs::write(secret_file, SECRET_KEY).unwrap();
        format!(
            "[storage]\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"http://127.0.0.1:{}\"\n\
             region = \"us-east-1\"\nallow_http = true\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key_file = \"{}\"\n",
            self.port,
            secret_file.display()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
