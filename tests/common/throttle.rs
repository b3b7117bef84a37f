//! A TCP proxy in front of the real Swift: caps the client→server rate (so an upload
//! lasts long enough to be killed at a chosen point) and injects scripted faults.
//!
//! Requests are framed by their head and Content-Length, so each one meets the
//! fault script; a faulted connection is closed afterwards.
//!
//! It runs on its own tokio runtime (one thread per proxy), so the tests drive it
//! through a plain synchronous API. Taking the link down cuts every open connection
//! at once, including one idle or stalled in the middle of a body.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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
    /// Forward the whole request, relay the response's head and `after` bytes of
    /// its body, then cut the connection (an answer lost mid-body: the server did
    /// the work). Only for answers with a body of more than `after` bytes.
    CutResponse { method: String, after: usize, count: usize },
    /// Forward the whole request, then hold the response back until the client
    /// gives up or dies (the server did the work; the client never hears of it).
    HoldResponse { method: String, count: usize },
}

impl Fault {
    /// Its kind, as [`Seen::fault`] records it (`Reply 503`, `Stall`...).
    fn kind(&self) -> String {
        match self {
            Fault::Reply { status, .. } => format!("Reply {status}"),
            other => format!("{other:?}").split([' ', '{']).next().unwrap_or("").to_string(),
        }
    }
    fn method(&self) -> &str {
        match self {
            Fault::Reply { method, .. }
            | Fault::Stall { method, .. }
            | Fault::Reset { method, .. }
            | Fault::CloseBeforeResponse { method, .. }
            | Fault::Corrupt { method, .. }
            | Fault::CutResponse { method, .. }
            | Fault::HoldResponse { method, .. } => method,
        }
    }
    fn count(&mut self) -> &mut usize {
        match self {
            Fault::Reply { count, .. }
            | Fault::Stall { count, .. }
            | Fault::Reset { count, .. }
            | Fault::CloseBeforeResponse { count, .. }
            | Fault::Corrupt { count, .. }
            | Fault::CutResponse { count, .. }
            | Fault::HoldResponse { count, .. } => count,
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
    /// Outages played by [`Throttle::flap`].
    pub outages: AtomicUsize,
    /// Request bytes (heads and bodies) forwarded to the server.
    pub bytes_up: std::sync::atomic::AtomicU64,
    /// Every request the proxy saw, in order: what the tests check instead of
    /// k5up's own words about what it did.
    pub seen: Mutex<Vec<Seen>>,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line, e.g. `PUT /v1/AUTH_test/c_segments%2F... HTTP/1.1`.
    pub line: String,
    /// Its headers (name: value), lower-case names.
    pub headers: Vec<(String, String)>,
    /// When its head arrived.
    pub start: Instant,
    /// When its whole body had been forwarded (or the fault ended it).
    pub end: Option<Instant>,
    /// The scripted fault that met this request (its kind, e.g. `Reply 503`), if any.
    pub fault: Option<String>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// A request of k5up's store probe: it names an object under `.k5up-probe/`.
    pub fn is_probe(&self) -> bool {
        is_probe_line(&self.line)
    }
    /// The method (`PUT`).
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }
    /// The container and object a Swift request names below the account
    /// (`/v1/AUTH_x/<container>%2F<object>?query`), percent-decoded: `("c", "")` for a
    /// container, None for a request outside an account (a login, `/info`).
    pub fn target(&self) -> Option<(String, String)> {
        let path = self.line.split(' ').nth(1)?;
        let path = path.split('?').next()?;
        let mut parts = path.splitn(4, '/');
        let (_, _version, _account, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = percent_encoding::percent_decode_str(rest).decode_utf8_lossy().to_string();
        let (c, o) = rest.split_once('/').unwrap_or((&rest, ""));
        Some((c.to_string(), o.to_string()))
    }
    /// A PUT of an object (not of a container) into `container`: its object name.
    pub fn put_into(&self, container: &str) -> Option<String> {
        let (c, o) = self.target()?;
        (self.method() == "PUT" && c == container && !o.is_empty()).then_some(o)
    }
    /// Its body as framed by Content-Length (0 without one).
    pub fn body_len(&self) -> u64 {
        self.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
    /// The proxy forwarded the whole request to the server (no fault met it).
    pub fn forwarded_whole(&self) -> bool {
        self.fault.is_none() && self.end.is_some()
    }
}

impl Stats {
    /// A copy of the requests seen so far, but for the store probe's (see
    /// [`Seen::is_probe`]: about ten tiny requests before a new journal's first job,
    /// which scripted faults never meet either).
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|r| !r.is_probe()).cloned().collect()
    }
    fn saw(&self, head: &str) -> usize {
        let mut lines = head.lines();
        let line = lines.next().unwrap_or("").to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut s = self.seen.lock().unwrap();
        s.push(Seen { line, headers, start: Instant::now(), end: None, fault: None });
        s.len() - 1
    }
    /// The PUTs of objects into `container` (`<c>_segments`: the segment PUTs), in order.
    pub fn puts_into(&self, container: &str) -> Vec<Seen> {
        self.requests().into_iter().filter(|r| r.put_into(container).is_some()).collect()
    }
    /// The requests a scripted fault met, in order.
    pub fn faulted(&self) -> Vec<Seen> {
        self.requests().into_iter().filter(|r| r.fault.is_some()).collect()
    }
    fn faulted_by(&self, i: usize, f: &Fault) {
        if let Some(r) = self.seen.lock().unwrap().get_mut(i) {
            r.fault = Some(f.kind());
        }
    }
    fn done(&self, i: usize) {
        if let Some(r) = self.seen.lock().unwrap().get_mut(i) {
            r.end.get_or_insert_with(Instant::now);
        }
    }
}

/// Keeps a [`Throttle::flap`] schedule running; dropping it leaves the link up.
pub struct Flapping(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Flapping {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
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
    /// Bumped when the link goes down: every connection watches it.
    cut: watch::Sender<u64>,
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
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
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
            cut: watch::channel(0).0,
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(accept(l, sh));
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

    /// A link that keeps dropping: up for `up`, then down for `down` (every open
    /// connection cut, as a real link loss does), again and again until the returned
    /// guard is dropped. The rate cap is shared by all connections (one link).
    pub fn flap(&self, up: Duration, down: Duration) -> Flapping {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sh, halt) = (self.shared.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let until = Instant::now() + up;
                while Instant::now() < until && !halt.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if halt.load(Ordering::Relaxed) {
                    return;
                }
                *sh.down_until.lock().unwrap() = Some(Instant::now() + down);
                sh.cut.send_modify(|n| *n += 1);
                sh.stats.outages.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(down);
            }
        });
        Flapping(stop)
    }

    /// Drops what is left of the fault script: from now on every request is forwarded.
    pub fn clear_faults(&self) {
        self.shared.script.lock().unwrap().clear();
    }

    /// Takes the link down for `d`: open connections are cut, new ones go nowhere.
    pub fn link_down(&self, d: Duration) {
        *self.shared.down_until.lock().unwrap() = Some(Instant::now() + d);
        self.shared.cut.send_modify(|n| *n += 1);
    }
}

async fn accept(l: std::net::TcpListener, sh: Arc<Shared>) {
    let l = TcpListener::from_std(l).unwrap();
    loop {
        let Ok((client, _)) = l.accept().await else { continue };
        sh.stats.connections.fetch_add(1, Ordering::Relaxed);
        if sh.down() {
            // the link is down: the connection goes nowhere
            sh.stats.link_down_cuts.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let sh = sh.clone();
        tokio::spawn(async move {
            sh.stats.active.fetch_add(1, Ordering::SeqCst);
            let mut cut = sh.cut.subscribe();
            tokio::select! {
                _ = serve(client, &sh) => {}
                _ = cut.changed() => { sh.stats.link_down_cuts.fetch_add(1, Ordering::Relaxed); }
            }
            sh.stats.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Takes the fault that applies to a request starting with `head`, if any.
fn is_probe_line(line: &str) -> bool {
    line.split(' ').nth(1).is_some_and(|p| p.contains("%2F.k5up-probe%2F"))
}

fn take_fault(script: &Mutex<Vec<Fault>>, head: &[u8]) -> Option<Fault> {
    if is_probe_line(std::str::from_utf8(head).unwrap_or("").lines().next().unwrap_or("")) {
        return None; // the faults are scripted for the job's own requests
    }
    let mut s = script.lock().unwrap();
    let pos = s.iter().position(|f| head.starts_with(f.method().as_bytes()))?;
    let f = s[pos].clone();
    *s[pos].count() -= 1;
    if *s[pos].count() == 0 {
        s.remove(pos);
    }
    Some(f)
}

/// Serves one client connection; both sockets close when it returns (or is dropped).
async fn serve(client: TcpStream, sh: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", sh.upstream)).await else { return };
    let (from, to_client) = client.into_split();
    let (mut from_server, to) = server.into_split();
    // The client's write half carries the server's responses, and the proxy's own
    // answer when a fault replies in the server's place.
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    let reply_to = to_client.clone();
    let cut_response: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
    let cut = cut_response.clone();
    let relay = async move {
        let mut buf = vec![0u8; 64 << 10];
        // Once a CutResponse is armed: the last bytes seen (to find the end of the
        // head across reads), and the body bytes still to relay once it is found.
        let mut tail: Vec<u8> = vec![];
        let mut body_left: Option<usize> = None;
        while let Ok(n) = from_server.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut take = n;
            let armed = *cut.lock().unwrap();
            if armed == Some(HOLD) {
                continue; // held back: the client never sees it
            }
            if let Some(after) = armed {
                let left = match body_left {
                    // The head went by: this read is all body.
                    Some(l) => {
                        take = 0;
                        Some(l)
                    }
                    None => {
                        tail.extend_from_slice(&buf[..n]);
                        let end = tail.windows(4).position(|w| w == b"\r\n\r\n");
                        end.map(|i| {
                            let head_end_in_buf = (i + 4).saturating_sub(tail.len() - n);
                            take = head_end_in_buf;
                            after
                        })
                    }
                };
                if let Some(l) = left {
                    let more = l.min(n - take);
                    take += more;
                    if l - more == 0 {
                        let mut w = to_client.lock().await;
                        let _ = w.write_all(&buf[..take]).await;
                        let _ = w.shutdown().await;
                        return;
                    }
                    body_left = Some(l - more);
                }
            }
            if to_client.lock().await.write_all(&buf[..take]).await.is_err() {
                break;
            }
        }
        let _ = to_client.lock().await.shutdown().await;
    };
    let link = Link { from, to, sh: sh.clone(), buf: Vec::new(), flip_at: None, cut_response };
    // A fault ends the request side first, and with it the connection; otherwise the
    // connection lasts until the server has sent its last response.
    tokio::select! {
        _ = requests(link, reply_to) => {}
        _ = relay => {}
    }
}

/// One request at a time: its head, then Content-Length bytes of body.
async fn requests(mut link: Link, reply_to: Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>) {
    let sh = link.sh.clone();
    let stats = &sh.stats;
    while let Some(head_len) = link.read_head().await {
        if !sh.latency.is_zero() {
            tokio::time::sleep(sh.latency).await;
        }
        let head = String::from_utf8_lossy(&link.buf[..head_len]).to_string();
        let body_len = content_length(&head);
        let whole = head_len + body_len.unwrap_or(0) as usize;
        let seen = stats.saw(&head);
        let fault = take_fault(&sh.script, head.as_bytes());
        if let Some(f) = &fault {
            stats.faulted_by(seen, f);
            stats.done(seen);
        }
        match fault {
            Some(Fault::Reply { status, retry_after, .. }) => {
                stats.replies.fetch_add(1, Ordering::Relaxed);
                // The body is read (not forwarded) first, as a server that answers
                // after the request does: an answer written while the client still
                // sends would reach it as a broken pipe, not as this status.
                if link.discard(whole).await.is_err() {
                    return;
                }
                let ra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 {status} Injected\r\n{ra}Content-Length: 0\r\nX-Trans-Id: tx-injected-fault\r\nConnection: close\r\n\r\n"
                );
                let mut w = reply_to.lock().await;
                let _ = w.write_all(resp.as_bytes()).await;
                let _ = w.shutdown().await;
                return;
            }
            Some(Fault::Stall { after, .. }) => {
                // Forward up to the stall point, then stay silent until the client gives up.
                stats.stalls.fetch_add(1, Ordering::Relaxed);
                if link.forward(head_len + after).await.is_ok() {
                    let mut sink = [0u8; 16 << 10];
                    while matches!(link.from.read(&mut sink).await, Ok(n) if n > 0) {}
                }
                return;
            }
            Some(Fault::Reset { after, .. }) => {
                stats.resets.fetch_add(1, Ordering::Relaxed);
                let _ = link.forward(head_len + after).await;
                return;
            }
            Some(Fault::CloseBeforeResponse { .. }) => {
                stats.closes.fetch_add(1, Ordering::Relaxed);
                let _ = link.forward(whole).await;
                return;
            }
            Some(Fault::CutResponse { after, .. }) => {
                stats.closes.fetch_add(1, Ordering::Relaxed);
                *link.cut_response.lock().unwrap() = Some(after);
                if link.forward(whole).await.is_err() {
                    return;
                }
            }
            Some(Fault::HoldResponse { .. }) => {
                stats.stalls.fetch_add(1, Ordering::Relaxed);
                *link.cut_response.lock().unwrap() = Some(HOLD);
                if link.forward(whole).await.is_ok() {
                    let mut sink = [0u8; 16 << 10];
                    while matches!(link.from.read(&mut sink).await, Ok(n) if n > 0) {}
                }
                return;
            }
            Some(Fault::Corrupt { at, .. }) => {
                stats.corruptions.fetch_add(1, Ordering::Relaxed);
                link.flip_at = Some(head_len + at);
                if link.forward(whole).await.is_err() {
                    return;
                }
            }
            None => {
                if body_len.is_none() {
                    // chunked or unknown framing: plain forwarding from here on
                    let n = link.buf.len();
                    if link.forward(n).await.is_ok() {
                        let _ = tokio::io::copy(&mut link.from, &mut link.to).await;
                    }
                    // the response may still be coming: let the relay finish it
                    return std::future::pending().await;
                }
                if link.forward(whole).await.is_err() {
                    return;
                }
                stats.done(seen);
            }
        }
    }
    // The client is done sending; the response relay decides when the connection ends.
    let _ = link.to.shutdown().await;
    std::future::pending::<()>().await
}

/// The `cut_response` value of [`Fault::HoldResponse`]: relay nothing.
const HOLD: usize = usize::MAX;

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
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    sh: Arc<Shared>,
    buf: Vec<u8>,
    /// Offset (from the start of the current request) of a byte to flip.
    flip_at: Option<usize>,
    /// Armed by [`Fault::CutResponse`]: body bytes of the next response to relay.
    cut_response: Arc<Mutex<Option<usize>>>,
}

impl Link {
    /// Reads until a request head is buffered; returns its length (with the blank line).
    async fn read_head(&mut self) -> Option<usize> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(i + 4);
            }
            let mut chunk = [0u8; 16 << 10];
            match self.from.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads exactly `n` bytes of the request (buffered first) and drops them.
    async fn discard(&mut self, mut n: usize) -> std::io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() {
                let mut chunk = vec![0u8; (64 << 10).min(n)];
                let got = self.from.read(&mut chunk).await?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..got]);
            }
            let take = self.buf.len().min(n);
            self.buf.drain(..take);
            n -= take;
        }
        Ok(())
    }

    /// Forwards exactly `n` bytes (buffered first, then read), at the capped rate.
    async fn forward(&mut self, mut n: usize) -> std::io::Result<()> {
        let mut done = 0;
        while n > 0 {
            if self.buf.is_empty() {
                let mut chunk = vec![0u8; (16 << 10).min(n)];
                let got = self.from.read(&mut chunk).await?;
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
            self.pace(take).await;
            self.to.write_all(&self.buf[..take]).await?;
            self.sh.stats.bytes_up.fetch_add(take as u64, Ordering::Relaxed);
            self.buf.drain(..take);
            n -= take;
            done += take;
        }
        self.flip_at = None;
        Ok(())
    }

    /// A shared virtual clock: every chunk books n/rate seconds of the link.
    async fn pace(&self, n: usize) {
        let start = {
            let mut c = self.sh.clock.lock().unwrap();
            let now = Instant::now();
            let start = (*c).max(now);
            *c = start + Duration::from_secs_f64(n as f64 / self.sh.rate as f64);
            *c
        };
        tokio::time::sleep_until(start.into()).await;
    }
}
