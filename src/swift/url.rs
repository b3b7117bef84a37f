//! The parts of endpoint URLs k5up needs, read with a URL parser (reqwest's `Url`),
//! never by slicing strings.

use reqwest::Url;

/// A URL's origin: `scheme://host[:port]`.
pub(crate) fn origin(url: &str) -> Option<String> {
    let u = Url::parse(url).ok()?;
    u.has_host().then(|| u.origin().ascii_serialization())
}

/// The account's path in a storage URL (`/v1/AUTH_x`), percent-decoded, without a
/// trailing `/`.
pub(crate) fn account_path(storage_url: &str) -> Option<String> {
    let u = Url::parse(storage_url).ok()?;
    let path = percent_encoding::percent_decode_str(u.path()).decode_utf8().ok()?.trim_end_matches('/').to_string();
    (!path.is_empty()).then_some(path)
}

/// Swift's `/info` beside a storage URL: the path before its `v1` segment, plus `info`
/// (`https://h/swift/v1/AUTH_x` → `https://h/swift/info`).
pub(crate) fn info_url(storage_url: &str) -> Option<String> {
    let mut u = Url::parse(storage_url).ok()?;
    let segs: Vec<String> = u.path_segments()?.map(str::to_string).collect();
    let keep = segs.iter().position(|s| s == "v1").unwrap_or(0);
    let mut path: Vec<&str> = segs[..keep].iter().map(String::as_str).collect();
    path.push("info");
    u.set_path(&format!("/{}", path.join("/")));
    u.set_query(None);
    Some(u.to_string())
}

/// True for a URL whose host is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
pub(crate) fn is_loopback(url: &str) -> bool {
    let Some(u) = Url::parse(url).ok() else { return false };
    let Some(host) = u.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_urls() {
        assert_eq!(origin("http://127.0.0.1:8080/v1/AUTH_a").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(origin("https://h/v1/AUTH_a").as_deref(), Some("https://h"));
        assert_eq!(origin("not a url"), None);
        assert_eq!(account_path("http://h:1/v1/AUTH_a%20b/").as_deref(), Some("/v1/AUTH_a b"));
        assert_eq!(account_path("http://h"), None);
        assert_eq!(info_url("http://h:8080/v1/AUTH_x").as_deref(), Some("http://h:8080/info"));
        assert_eq!(info_url("https://h/swift/v1/AUTH_x?q=1").as_deref(), Some("https://h/swift/info"));
        assert_eq!(info_url("https://h/v1").as_deref(), Some("https://h/info"));
        assert!(is_loopback("http://127.0.0.1:9393"));
        assert!(is_loopback("http://127.8.0.1/"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(is_loopback("http://localhost:1/"));
        assert!(!is_loopback("http://127.0.0.1.example.com/"));
        assert!(!is_loopback("http://10.0.0.1/"));
    }
}
