//! A TCP proxy in front of the real Swift that caps the client→server rate, so
//! that an upload lasts long enough to be killed at a chosen point.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running throttle; it lives as long as the test process.
pub struct Throttle {
    pub port: u16,
}

impl Throttle {
    /// Forwards 127.0.0.1:<new port> to 127.0.0.1:`upstream`, at most `rate` bytes/s upstream.
    pub fn start(upstream: u16, rate: u64) -> Throttle {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let clock = Arc::new(Mutex::new(Instant::now()));
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let clock = clock.clone();
                std::thread::spawn(move || pipe(client, server, Some((rate, clock))));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        Throttle { port }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: Option<(u64, Arc<Mutex<Instant>>)>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((rate, clock)) = &limit {
            // A shared virtual clock: every chunk books n/rate seconds of the link.
            let start = {
                let mut c = clock.lock().unwrap();
                let now = Instant::now();
                let start = (*c).max(now);
                *c = start + Duration::from_secs_f64(n as f64 / *rate as f64);
                *c
            };
            let now = Instant::now();
            if start > now {
                std::thread::sleep(start - now);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
