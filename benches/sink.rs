//! The upload pipeline against a local sink: a minimal server that speaks just
//! enough of Swift's API (v1 auth, /info, containers, an empty listing, object PUTs
//! whose bodies it reads and discards, SLO manifests, HEAD) for k5up to run end to
//! end with no storage behind it. What is left is the client's own cost: reading,
//! hashing, HTTP. Reports GiB/s and client CPU-seconds per GiB, with every MD5
//! backend. A benchmark only: the tests run against the real Swift.
//! Run with `cargo bench --bench sink` (`BENCH_SINK_GIB`, default 4).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Objects = Arc<Mutex<HashMap<String, (u64, String)>>>;

fn main() {
    let gib: u64 = std::env::var("BENCH_SINK_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let objects: Objects = Arc::default();
    rt.spawn(serve(listener, port, objects));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.raw");
    let mut f = std::fs::File::create(&path).unwrap();
    let block: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for i in 0..(gib << 10) {
        let mut b = block.clone();
        b[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&b).unwrap();
    }
    drop(f);
    println!("{gib} GiB from the page cache to a discarding sink, 256 MiB segments, 4 in parallel");
    for backend in ["avx2", "sse2", "scalar"] {
        let journal = dir.path().join(format!("journal-{backend}"));
        let before = children_cpu();
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_k5up"))
            .args(["upload", path.to_str().unwrap(), "-c", &format!("sink-{backend}")])
            .args(["--segment-size", "256MiB", "--concurrency", "4", "--no-progress"])
            .env_clear()
            .env("ST_AUTH", format!("http://127.0.0.1:{port}/auth/v1.0"))
            .env("ST_USER", "sink:sink")
            .env("ST_KEY", "sink")
            .env("K5UP_JOURNAL", &journal)
            .env("K5UP_MD5", backend)
            .output()
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        let cpu = children_cpu() - before;
        if !out.status.success() {
            println!("{backend}: k5up failed: {}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let g = gib as f64;
        println!("k5up, MD5 {backend:6}: {:.2} GiB/s, {:.2} client CPU-s/GiB ({:.1} s wall)", g / wall, cpu / g, wall);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("cores: {cores} (compare with the md5lanes figures of `cargo bench --bench hash`)");
}

/// User + system CPU seconds of the finished children of this process.
fn children_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest: Vec<&str> = text[text.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let tck = 100.0; // USER_HZ on Linux
    (rest[13].parse::<f64>().unwrap() + rest[14].parse::<f64>().unwrap()) / tck
}

async fn serve(l: TcpListener, port: u16, objects: Objects) {
    loop {
        let Ok((s, _)) = l.accept().await else { continue };
        tokio::spawn(connection(s, port, objects.clone()));
    }
}

async fn connection(mut s: TcpStream, port: u16, objects: Objects) {
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0usize;
    loop {
        // the request head
        let head_end = loop {
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let (method, target) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let etag = header("etag").unwrap_or_default().trim_matches('"').to_string();
        // the body: kept only for manifests, otherwise read and discarded
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let keep = query.contains("multipart-manifest=put");
        let mut body = Vec::new();
        let mut left = len;
        let inbuf = (have - head_end).min(left);
        if keep {
            body.extend_from_slice(&buf[head_end..head_end + inbuf]);
        }
        left -= inbuf;
        buf.copy_within(head_end + inbuf..have, 0);
        have -= head_end + inbuf;
        while left > 0 {
            let want = left.min(buf.len());
            match s.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if keep {
                        body.extend_from_slice(&buf[..n]);
                    }
                    left -= n;
                }
            }
        }
        let resp = answer(&method, path, query, &etag, &body, port, &objects);
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn answer(method: &str, path: &str, query: &str, etag: &str, body: &[u8], port: u16, objects: &Objects) -> String {
    let reply = |status: &str, headers: &str, body: &str| {
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nX-Trans-Id: tx-sink\r\n\r\n{body}", body.len())
    };
    if path == "/auth/v1.0" {
        let h = format!(
            "X-Storage-Url: http://127.0.0.1:{port}/v1/AUTH_sink\r\nX-Auth-Token: AUTH_tk-sink\r\nX-Auth-Token-Expires: 86400\r\n"
        );
        return reply("200 OK", &h, "");
    }
    if path == "/info" {
        let info = r#"{"swift":{"max_file_size":5368709122,"container_listing_limit":10000},"slo":{"max_manifest_segments":1000,"max_manifest_size":8388608,"min_segment_size":1}}"#;
        return reply("200 OK", "Content-Type: application/json\r\n", info);
    }
    let rest = path.strip_prefix("/v1/AUTH_sink").unwrap_or("");
    let parts: Vec<&str> = rest.trim_start_matches('/').splitn(2, '/').collect();
    match (method, parts.as_slice()) {
        ("PUT", [_]) => reply("201 Created", "", ""),
        ("HEAD", [_]) | ("HEAD", []) => reply("204 No Content", "", ""),
        ("GET", [_]) => reply("200 OK", "Content-Type: application/json\r\n", "[]"),
        ("PUT", [_, _]) if query.contains("multipart-manifest=put") => {
            let entries: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap_or_default();
            let mut md5 = Md5::new();
            let mut size = 0;
            for e in &entries {
                md5.update(e["etag"].as_str().unwrap_or("").as_bytes());
                size += e["size_bytes"].as_u64().unwrap_or(0);
            }
            let slo = hex::encode(md5.finalize());
            objects.lock().unwrap().insert(path.to_string(), (size, slo.clone()));
            if query.contains("heartbeat=on") {
                let b = format!(r#"{{"Response Status": "201 Created", "Etag": "\"{slo}\"", "Errors": []}}"#);
                reply("202 Accepted", "Content-Type: application/json\r\n", &b)
            } else {
                reply("201 Created", &format!("Etag: \"{slo}\"\r\n"), "")
            }
        }
        ("PUT", [_, _]) => reply("201 Created", &format!("Etag: {etag}\r\n"), ""),
        ("HEAD", [_, _]) => match objects.lock().unwrap().get(path) {
            // HEAD: Content-Length is the object's size, and there is no body.
            Some((size, e)) => format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nEtag: \"{e}\"\r\nX-Static-Large-Object: True\r\nX-Trans-Id: tx-sink\r\n\r\n"
            ),
            None => reply("404 Not Found", "", ""),
        },
        _ => reply("404 Not Found", "", ""),
    }
}
