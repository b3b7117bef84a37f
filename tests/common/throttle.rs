//! A TCP proxy in front of the real Swift: caps the client→server rate (so an upload
//! lasts long enough to be killed at a chosen point) and injects scripted faults.
//!
//! Requests are framed by their head and Content-Length, so each one meets the
//! fault script; a faulted connection is closed afterwards.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `status` (with `Retry-After` when given) instead of forwarding, for the
    /// next `count` requests whose request line starts with `method` (e.g. `PUT ` or
    /// `PUT /v1/AUTH_test/c_segments/`).
    Reply { method: String, status: u16, retry_after: Option<u32>, count: usize },
    /// For the next `count` requests whose request line starts with `method`:
    /// forward `after` bytes of the request, then stop forwarding (a stalled body)
    /// until the client gives up.
    Stall { method: String, after: usize, count: usize },
    /// Forward `after` bytes of the request, then cut both directions (a reset link).
    Reset { method: String, after: usize, count: usize },
    /// Forward the whole request, then close without relaying the response (the
    /// server may well have stored the object).
    CloseBeforeResponse { method: String, count: usize },
    /// Flip one byte of the body at offset `at` (Swift must answer 422).
    Corrupt { method: String, at: usize, count: usize },
}

impl Fault {
    fn method(&self) -> &str {
        match self {
            Fault::Reply { method, .. }
            | Fault::Stall { method, .. }
            | Fault::Reset { method, .. }
            | Fault::CloseBeforeResponse { method, .. }
            | Fault::Corrupt { method, .. } => method,
        }
    }
    fn count(&mut self) -> &mut usize {
        match self {
            Fault::Reply { count, .. }
            | Fault::Stall { count, .. }
            | Fault::Reset { count, .. }
            | Fault::CloseBeforeResponse { count, .. }
            | Fault::Corrupt { count, .. } => count,
        }
    }
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub replies: AtomicUsize,
    pub stalls: AtomicUsize,
    pub resets: AtomicUsize,
    pub closes: AtomicUsize,
    pub corruptions: AtomicUsize,
    /// Connections cut or turned away while the link was down.
    pub link_down_cuts: AtomicUsize,
    pub connections: AtomicUsize,
    /// Connections being served now.
    pub active: AtomicUsize,
}

/// Settings shared by the connections of one proxy.
struct Shared {
    upstream: u16,
    rate: u64,
    latency: Duration,
    clock: Mutex<Instant>,
    script: Mutex<Vec<Fault>>,
    stats: Arc<Stats>,
    down_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn down(&self) -> bool {
        self.down_until.lock().unwrap().is_some_and(|t| Instant::now() < t)
    }
}

/// A running proxy; it lives as long as the test process.
pub struct Throttle {
    pub port: u16,
    pub stats: Arc<Stats>,
    shared: Arc<Shared>,
}

impl Throttle {
    /// Forwards 127.0.0.1:<new port> to 127.0.0.1:`upstream`, at most `rate` bytes/s upstream.
    pub fn start(upstream: u16, rate: u64) -> Throttle {
        Throttle::with_faults(upstream, rate, vec![])
    }

    /// Like [`Throttle::start`], with a script of faults applied in order.
    pub fn with_faults(upstream: u16, rate: u64, faults: Vec<Fault>) -> Throttle {
        Throttle::new(upstream, rate, Duration::ZERO, faults)
    }

    /// The full form: `latency` is added before each request is forwarded.
    pub fn new(upstream: u16, rate: u64, latency: Duration, faults: Vec<Fault>) -> Throttle {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            upstream,
            rate,
            latency,
            clock: Mutex::new(Instant::now()),
            script: Mutex::new(faults),
            stats: stats.clone(),
            down_until: Mutex::new(None),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                sh.stats.connections.fetch_add(1, Ordering::Relaxed);
                if sh.down() {
                    // the link is down: the connection goes nowhere
                    sh.stats.link_down_cuts.fetch_add(1, Ordering::Relaxed);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let sh = sh.clone();
                std::thread::spawn(move || serve(client, sh));
            }
        });
        Throttle { port, stats, shared }
    }

    /// Waits until no connection is being served: whatever a killed client had
    /// already handed to the kernel has reached the server (or been dropped).
    pub fn wait_idle(&self, limit: Duration) {
        let t = Instant::now();
        while self.stats.active.load(Ordering::SeqCst) > 0 && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes the link down for `d`: open connections are cut, new ones go nowhere.
    pub fn link_down(&self, d: Duration) {
        *self.shared.down_until.lock().unwrap() = Some(Instant::now() + d);
    }
}

/// Takes the fault that applies to a request starting with `head`, if any.
fn take_fault(script: &Mutex<Vec<Fault>>, head: &[u8]) -> Option<Fault> {
    let mut s = script.lock().unwrap();
    let pos = s.iter().position(|f| head.starts_with(f.method().as_bytes()))?;
    let f = s[pos].clone();
    *s[pos].count() -= 1;
    if *s[pos].count() == 0 {
        s.remove(pos);
    }
    Some(f)
}

fn serve(client: TcpStream, sh: Arc<Shared>) {
    sh.stats.active.fetch_add(1, Ordering::SeqCst);
    serve_one(client, &sh);
    sh.stats.active.fetch_sub(1, Ordering::SeqCst);
}

fn serve_one(client: TcpStream, sh: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", sh.upstream)) else { return };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let relay = std::thread::spawn(move || {
        let mut to = c2;
        let _ = std::io::copy(&mut { s2 }, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut link = Link { from: client, to: server, sh: sh.clone(), buf: Vec::new(), flip_at: None };
    let stats = &sh.stats;
    // One request at a time: its head, then Content-Length bytes of body.
    while let Some(head_len) = link.read_head() {
        if !sh.latency.is_zero() {
            std::thread::sleep(sh.latency);
        }
        let head = String::from_utf8_lossy(&link.buf[..head_len]).to_string();
        let body_len = content_length(&head);
        let whole = head_len + body_len.unwrap_or(0) as usize;
        match take_fault(&sh.script, head.as_bytes()) {
            Some(Fault::Reply { status, retry_after, .. }) => {
                stats.replies.fetch_add(1, Ordering::Relaxed);
                let ra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 {status} Injected\r\n{ra}Content-Length: 0\r\nX-Trans-Id: tx-injected-fault\r\nConnection: close\r\n\r\n"
                );
                let _ = link.from.write_all(resp.as_bytes());
                break;
            }
            Some(Fault::Stall { after, .. }) => {
                // Forward up to the stall point, then stay silent until the client gives up.
                stats.stalls.fetch_add(1, Ordering::Relaxed);
                if link.forward(head_len + after).is_ok() {
                    let mut sink = [0u8; 16 << 10];
                    while matches!(link.from.read(&mut sink), Ok(n) if n > 0) {}
                }
                break;
            }
            Some(Fault::Reset { after, .. }) => {
                stats.resets.fetch_add(1, Ordering::Relaxed);
                let _ = link.forward(head_len + after);
                break;
            }
            Some(Fault::CloseBeforeResponse { .. }) => {
                stats.closes.fetch_add(1, Ordering::Relaxed);
                let _ = link.forward(whole);
                let _ = link.from.shutdown(Shutdown::Both);
                break;
            }
            Some(Fault::Corrupt { at, .. }) => {
                stats.corruptions.fetch_add(1, Ordering::Relaxed);
                link.flip_at = Some(head_len + at);
                if link.forward(whole).is_err() {
                    break;
                }
            }
            None => {
                if body_len.is_none() {
                    // chunked or unknown framing: plain forwarding from here on
                    let _ = link.forward(link.buf.len());
                    let _ = std::io::copy(&mut link.from, &mut link.to);
                    break;
                }
                if link.forward(whole).is_err() {
                    break;
                }
            }
        }
    }
    let _ = link.to.shutdown(Shutdown::Both);
    let _ = link.from.shutdown(Shutdown::Both);
    let _ = relay.join();
}

fn content_length(head: &str) -> Option<u64> {
    let mut len = Some(0);
    for line in head.lines().skip(1) {
        let Some((k, v)) = line.split_once(':') else { continue };
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
    }
    len
}

/// The client→server direction of one connection, with its read buffer.
struct Link {
    from: TcpStream,
    to: TcpStream,
    sh: Arc<Shared>,
    buf: Vec<u8>,
    /// Offset (from the start of the current request) of a byte to flip.
    flip_at: Option<usize>,
}

impl Link {
    /// Reads until a request head is buffered; returns its length (with the blank line).
    fn read_head(&mut self) -> Option<usize> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(i + 4);
            }
            let mut chunk = [0u8; 16 << 10];
            match self.from.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Forwards exactly `n` bytes (buffered first, then read), at the capped rate.
    fn forward(&mut self, mut n: usize) -> std::io::Result<()> {
        let mut done = 0;
        while n > 0 {
            if self.sh.down() {
                self.sh.stats.link_down_cuts.fetch_add(1, Ordering::Relaxed);
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            if self.buf.is_empty() {
                let mut chunk = vec![0u8; (16 << 10).min(n)];
                let got = self.from.read(&mut chunk)?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..got]);
            }
            let take = self.buf.len().min(n);
            if let Some(at) = self.flip_at
                && at >= done
                && at < done + take
            {
                self.buf[at - done] ^= 0x55;
                self.flip_at = None;
            }
            self.pace(take);
            self.to.write_all(&self.buf[..take])?;
            self.buf.drain(..take);
            n -= take;
            done += take;
        }
        self.flip_at = None;
        Ok(())
    }

    /// A shared virtual clock: every chunk books n/rate seconds of the link.
    fn pace(&self, n: usize) {
        let start = {
            let mut c = self.sh.clock.lock().unwrap();
            let now = Instant::now();
            let start = (*c).max(now);
            *c = start + Duration::from_secs_f64(n as f64 / self.sh.rate as f64);
            *c
        };
        let now = Instant::now();
        if start > now {
            std::thread::sleep(start - now);
        }
    }
}
