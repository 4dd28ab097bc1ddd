//! A TCP proxy on loopback that breaks the link on purpose, for the
//! fault-injection tests: it forwards a camera's connections to the ingest
//! and, on command, cuts them (FIN), resets them (RST), blackholes them
//! (bytes vanish, nothing is closed), throttles them to a byte rate, or
//! delays every chunk.
//!
//! The target can change while it runs, so an ingest can restart on
//! another port behind the same address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Forwards everything.
    Pass,
    /// Accepts and reads, forwards nothing, closes nothing: a link that
    /// went silent (a dead radio, a dropped route).
    Blackhole,
    /// At most this many bytes per second in each direction.
    Throttle(u64),
    /// Every chunk waits this long.
    Delay(Duration),
}

struct State {
    target: Mutex<SocketAddr>,
    mode: Mutex<Mode>,
    /// Bumped to end every open connection: `(generation, reset)`.
    cuts: watch::Sender<(u64, bool)>,
    /// Bytes forwarded camera → ingest and back.
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
}

/// A running fault proxy; stops with its handle.
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy listens");
        let addr = listener.local_addr().expect("proxy address");
        let (cuts, _) = watch::channel((0, false));
        let state = Arc::new(State {
            target: Mutex::new(target),
            mode: Mutex::new(Mode::Pass),
            cuts,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let s = state.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(carry(client, s.clone()));
            }
        });
        Self {
            addr,
            state,
            _runtime: runtime,
        }
    }

    /// The URL a camera uploads to through the proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode") = mode;
    }

    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }

    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Closes every open connection (FIN both ways); new ones are accepted.
    pub fn cut(&self) {
        self.state.cuts.send_modify(|(g, reset)| {
            *g += 1;
            *reset = false;
        });
    }

    /// Resets every open connection (RST both ways).
    pub fn reset(&self) {
        self.state.cuts.send_modify(|(g, reset)| {
            *g += 1;
            *reset = true;
        });
    }

    /// Points new connections at another address (an ingest restarted
    /// elsewhere). Open connections are cut.
    pub fn set_target(&self, target: SocketAddr) {
        *self.state.target.lock().expect("target") = target;
        self.cut();
    }

    /// Bytes forwarded from the camera to the ingest so far.
    pub fn bytes_up(&self) -> u64 {
        self.state.up.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
}

async fn carry(client: TcpStream, state: Arc<State>) {
    let target = *state.target.lock().expect("target");
    let Ok(server) = TcpStream::connect(target).await else {
        // The ingest is down: the camera sees its connection closed.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client, server) = (Arc::new(client), Arc::new(server));
    let mut cuts = state.cuts.subscribe();
    let start = cuts.borrow_and_update().0;
    let up = pump(client.clone(), server.clone(), state.clone(), true);
    let down = pump(server.clone(), client.clone(), state.clone(), false);
    tokio::pin!(up, down);
    let mut up_done = false;
    let mut down_done = false;
    let reset = loop {
        tokio::select! {
            () = &mut up, if !up_done => up_done = true,
            () = &mut down, if !down_done => down_done = true,
            changed = cuts.changed() => {
                if changed.is_err() { break false; }
                let (g, reset) = *cuts.borrow();
                if g != start { break reset; }
            }
        }
        if up_done && down_done {
            return;
        }
    };
    for s in [&client, &server] {
        let sock = socket2::SockRef::from(&**s);
        if reset {
            // Closing with a zero linger time sends RST instead of FIN.
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
        // Ends the connection now, even while a pump still holds the socket.
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Copies one direction until either side ends, as the mode says.
async fn pump(from: Arc<TcpStream>, to: Arc<TcpStream>, state: Arc<State>, upstream: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mode = *state.mode.lock().expect("mode");
        // Throttled: read at most one tenth of a second's worth at a time.
        let max = match mode {
            Mode::Throttle(rate) => (rate / 10).clamp(1, buf.len() as u64) as usize,
            _ => buf.len(),
        };
        if from.readable().await.is_err() {
            break;
        }
        let n = match from.try_read(&mut buf[..max]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        };
        let mode = *state.mode.lock().expect("mode");
        match mode {
            Mode::Blackhole => continue,
            Mode::Throttle(rate) => {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate.max(1) as f64)).await;
            }
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass => {}
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(rest) {
                Ok(w) => rest = &rest[w..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
        let counter = if upstream { &state.up } else { &state.down };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    // The other side of this direction ends too (half-close).
    let _ = socket2::SockRef::from(&*to).shutdown(std::net::Shutdown::Write);
}
