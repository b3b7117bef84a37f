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
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub replies: AtomicUsize,
    pub stalls: AtomicUsize,
    pub connections: AtomicUsize,
}

/// A running proxy; it lives as long as the test process.
pub struct Throttle {
    pub port: u16,
    pub stats: Arc<Stats>,
}

impl Throttle {
    /// Forwards 127.0.0.1:<new port> to 127.0.0.1:`upstream`, at most `rate` bytes/s upstream.
    pub fn start(upstream: u16, rate: u64) -> Throttle {
        Throttle::with_faults(upstream, rate, vec![])
    }

    /// Like [`Throttle::start`], with a script of faults applied in order.
    pub fn with_faults(upstream: u16, rate: u64, faults: Vec<Fault>) -> Throttle {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let clock = Arc::new(Mutex::new(Instant::now()));
        let script = Arc::new(Mutex::new(faults));
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (clock, script, st) = (clock.clone(), script.clone(), st.clone());
                std::thread::spawn(move || serve(client, upstream, rate, clock, script, st));
            }
        });
        Throttle { port, stats }
    }
}

/// Takes the fault that applies to a connection starting with `head`, if any.
fn take_fault(script: &Mutex<Vec<Fault>>, head: &[u8]) -> Option<Fault> {
    let mut s = script.lock().unwrap();
    let pos = s.iter().position(|f| {
        let m = match f {
            Fault::Reply { method, .. } | Fault::Stall { method, .. } => method,
        };
        head.starts_with(m.as_bytes())
    })?;
    let f = s[pos].clone();
    let left = match &mut s[pos] {
        Fault::Reply { count, .. } | Fault::Stall { count, .. } => {
            *count -= 1;
            *count
        }
    };
    if left == 0 {
        s.remove(pos);
    }
    Some(f)
}

fn serve(
    client: TcpStream,
    upstream: u16,
    rate: u64,
    clock: Arc<Mutex<Instant>>,
    script: Arc<Mutex<Vec<Fault>>>,
    stats: Arc<Stats>,
) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut to = c2;
        let _ = std::io::copy(&mut { s2 }, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut link = Link { from: client, to: server, rate, clock, buf: Vec::new() };
    // One request at a time: its head, then Content-Length bytes of body.
    while let Some(head_len) = link.read_head() {
        let head = String::from_utf8_lossy(&link.buf[..head_len]).to_string();
        let body_len = content_length(&head);
        match take_fault(&script, head.as_bytes()) {
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
            None => {
                let Some(body_len) = body_len else {
                    // chunked or unknown framing: plain forwarding from here on
                    let _ = link.forward(link.buf.len());
                    let _ = std::io::copy(&mut link.from, &mut link.to);
                    break;
                };
                if link.forward(head_len + body_len as usize).is_err() {
                    break;
                }
            }
        }
    }
    let _ = link.to.shutdown(Shutdown::Both);
    let _ = link.from.shutdown(Shutdown::Both);
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
    rate: u64,
    clock: Arc<Mutex<Instant>>,
    buf: Vec<u8>,
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
        while n > 0 {
            if self.buf.is_empty() {
                let mut chunk = vec![0u8; (16 << 10).min(n)];
                let got = self.from.read(&mut chunk)?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..got]);
            }
            let take = self.buf.len().min(n);
            self.pace(take);
            self.to.write_all(&self.buf[..take])?;
            self.buf.drain(..take);
            n -= take;
        }
        Ok(())
    }

    /// A shared virtual clock: every chunk books n/rate seconds of the link.
    fn pace(&self, n: usize) {
        let start = {
            let mut c = self.clock.lock().unwrap();
            let now = Instant::now();
            let start = (*c).max(now);
            *c = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            *c
        };
        let now = Instant::now();
        if start > now {
            std::thread::sleep(start - now);
        }
    }
}
