//! A failed request to Swift or Keystone, with what the operator needs: the
//! operation, the status, the server's `X-Trans-Id`, and the error class.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, chain};
use crate::retry::{Class, Retryable, classify_status};

/// Where a failure came from: decides its hint and, with the status, its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The server answered with an error status.
    Server,
    /// The network: reset, timed out, stalled.
    Network,
    /// The network: the host name does not resolve (a typo, or no DNS).
    UnknownHost,
    /// The network: nothing listens at that address and port (connection refused).
    Refused,
    /// TLS: the server's certificate is not trusted (retrying cannot help).
    Tls,
    /// An `https://` URL for a server that does not speak TLS on that port.
    PlainHttp,
    /// TLS: the server refused the handshake: closed the connection (a plain-HTTP
    /// port that hangs up on a TLS hello, or a TLS server restarting: transient), or
    /// sent an alert (no common protocol version or cipher: fatal).
    TlsRefused,
    /// The URL leads to a server, but not to the service expected there (an auth URL
    /// that is Glance, say): the user's configuration to fix.
    Endpoint,
    /// The source file: changed, shrank, unreadable (the user's to fix).
    Source,
    /// This client: an unreadable response, a journal write that failed.
    Client,
    /// This process ran out of file descriptors (EMFILE, ENFILE) opening a
    /// connection: no retry helps until the limit is raised.
    NoFds,
}

impl Origin {
    /// True for a failure to reach the server at all (or to keep talking to it): an
    /// outage may cause each of these, so they are retried, the next try soon after.
    pub(crate) fn is_link(self) -> bool {
        matches!(self, Origin::Network | Origin::UnknownHost | Origin::Refused | Origin::TlsRefused)
    }

    /// True for the link failures that, at the first contact of a new job, are a
    /// wrong URL far more often than an outage: the host does not resolve, nothing
    /// listens on the port, a TLS handshake refused.
    pub(crate) fn is_unreachable(self) -> bool {
        matches!(self, Origin::UnknownHost | Origin::Refused | Origin::TlsRefused)
    }
}

/// A failed HTTP operation.
#[derive(Debug, Clone)]
pub(crate) struct SwiftError {
    /// What was being done, e.g. `PUT segment 17 of disk.img`.
    pub op: String,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// The server's transaction id (`X-Trans-Id` / `X-Openstack-Request-Id`).
    pub trans_id: Option<String>,
    /// A short description (the start of the body, or the transport error).
    pub detail: String,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Retry, re-authenticate, or stop.
    pub class: Class,
    /// Where it came from.
    pub origin: Origin,
    /// The error underneath (an I/O error reading the source, say), kept for its
    /// value: its kind and OS error are asked, never its text.
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The first error of type `T` in `e`'s chain.
fn find<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    chain(e).find_map(|s| s.downcast_ref::<T>())
}

/// True when an I/O error with one of the OS error numbers `codes` is in `e`'s chain.
fn has_os_error(e: &(dyn std::error::Error + 'static), codes: &[i32]) -> bool {
    chain(e).any(|s| {
        s.downcast_ref::<std::io::Error>().and_then(|io| io.raw_os_error()).is_some_and(|c| codes.contains(&c))
    })
}

fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    chain(e).any(|s| s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind))
}

/// `host:port` of a URL, for messages (never its user or password).
fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The longest wait a `Retry-After` may ask for; a longer one is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A `Retry-After` value (RFC 9110: delay-seconds or an HTTP-date) as a wait from
/// `now`: a date in the past waits 0, anything unreadable is ignored, nothing panics.
pub(crate) fn parse_retry_after(v: &str, now: jiff::Timestamp) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(v).ok()?;
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

impl SwiftError {
    /// An error from a response's status, headers and body.
    pub(crate) fn from_response(op: &str, status: u16, headers: &reqwest::header::HeaderMap, body: &str) -> Self {
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let detail = server_message(body);
        SwiftError {
            op: op.to_string(),
            status: Some(status),
            trans_id: trans_id(headers),
            detail,
            retry_after,
            class: classify_status(status),
            origin: Origin::Server,
            cause: None,
        }
    }

    /// An error of the transport: transient (a reset, a timeout, and also a refused
    /// connection or a host that does not resolve, which an outage may cause), except
    /// a TLS handshake that no retry can fix (an untrusted certificate, a plain-HTTP
    /// answer). The origin says which, from the error's type, never its text.
    pub(crate) fn transport(op: &str, e: &reqwest::Error) -> Self {
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            chain = format!("{chain}: {s}");
            src = s.source();
        }
        let at = e.url().map(host_port).unwrap_or_else(|| "the server".into());
        let https = e.url().is_some_and(|u| u.scheme() == "https");
        let connect = e.is_connect();
        let (class, origin, detail) = if let Some(t) = find::<rustls::Error>(e) {
            match t {
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => (
                    Class::Fatal,
                    Origin::PlainHttp,
                    format!("the TLS handshake with {at} failed: the server does not speak TLS on this port ({chain})"),
                ),
                rustls::Error::AlertReceived(_)
                | rustls::Error::PeerIncompatible(_)
                | rustls::Error::PeerMisbehaved(_)
                | rustls::Error::InvalidMessage(_) => (
                    Class::Fatal,
                    Origin::TlsRefused,
                    format!("the TLS handshake with {at} failed: the server refused it ({chain})"),
                ),
                _ => (Class::Fatal, Origin::Tls, format!("the TLS handshake with {at} failed: {chain}")),
            }
        } else if has_os_error(e, &[23, 24]) {
            let what = format!("cannot open a connection to {at}: too many open files in this process ({chain})");
            (Class::Fatal, Origin::NoFds, what)
        } else if let Some(u) = find::<super::dns::UnknownHost>(e) {
            (Class::Transient, Origin::UnknownHost, u.to_string())
        } else if connect && has_io_kind(e, std::io::ErrorKind::ConnectionRefused) {
            (Class::Transient, Origin::Refused, format!("connection refused: nothing listens on {at}"))
        } else if connect && https && has_io_kind(e, std::io::ErrorKind::UnexpectedEof) {
            (
                Class::Transient,
                Origin::TlsRefused,
                format!(
                    "the TLS handshake with {at} failed: the server closed the connection (does this port speak TLS?)"
                ),
            )
        } else if e.is_timeout() && connect {
            (Class::Transient, Origin::Network, format!("connecting to {at} timed out ({chain})"))
        } else if e.is_timeout() {
            (Class::Transient, Origin::Network, format!("{at} did not answer in time ({chain})"))
        } else {
            (Class::Transient, Origin::Network, chain)
        };
        SwiftError {
            op: op.to_string(),
            status: None,
            trans_id: None,
            detail,
            retry_after: None,
            class,
            origin,
            cause: None,
        }
    }

    /// A body that made no progress for `timeout`: a network fault, retried.
    pub(crate) fn stalled(op: &str, timeout: Duration) -> Self {
        let detail = format!("stalled: no progress for {timeout:?}");
        SwiftError { origin: Origin::Network, ..Self::local(op, detail, Class::Transient) }
    }

    /// The source file changed or cannot be read: not retried, the user's to fix.
    pub(crate) fn source(op: &str, detail: impl Into<String>) -> Self {
        SwiftError { origin: Origin::Source, ..Self::local(op, detail, Class::Fatal) }
    }

    /// A failure of this client while talking to the server (e.g. an unreadable body).
    pub(crate) fn local(op: &str, detail: impl Into<String>, class: Class) -> Self {
        SwiftError {
            op: op.to_string(),
            status: None,
            trans_id: None,
            detail: detail.into(),
            retry_after: None,
            class,
            origin: Origin::Client,
            cause: None,
        }
    }

    /// Keeps `cause` (an I/O error, say) underneath, for its value; the message stays
    /// this error's own.
    pub(crate) fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The server error underneath `e`, wherever it sits in its chain (what a caller
    /// asks, e.g. its status, instead of reading the message).
    #[cfg(test)]
    pub(crate) fn of(e: &Error) -> Option<&SwiftError> {
        e.cause()
    }

    /// Converts to the library's error, of `kind` when the class is not decisive.
    pub(crate) fn into_error(self, kind_if_transient: ErrorKind) -> Error {
        let kind = match (self.class, self.status) {
            (_, Some(401)) => ErrorKind::BadInput,
            (Class::Fatal, _) if matches!(self.origin, Origin::Tls | Origin::PlainHttp | Origin::TlsRefused) => {
                ErrorKind::BadInput
            }
            _ if self.origin == Origin::Endpoint => ErrorKind::BadInput,
            _ if self.origin == Origin::NoFds => ErrorKind::Resumable,
            (Class::Transient, _) => kind_if_transient,
            _ => ErrorKind::Failed,
        };
        let hint = match self.status {
            Some(401) => Some("check the credentials (ST_* / OS_* variables or clouds.yaml)"),
            Some(403) => Some("the account does not allow this operation; ask for the member/swiftoperator role"),
            Some(404) => Some("check the container and object names"),
            Some(413) => Some("the server refused the size; check `k5up upload --dry-run` for its limits"),
            None if self.origin == Origin::Tls => {
                Some("the server's TLS certificate is not trusted: --cacert FILE or OS_CACERT adds a private CA")
            }
            None if self.origin == Origin::PlainHttp => Some("use an http:// URL for this endpoint, or its TLS port"),
            None if self.origin == Origin::TlsRefused && self.class == Class::Fatal => Some(
                "check the URL's scheme and port: https:// needs a port that speaks TLS (http:// for a plain-HTTP port)",
            ),
            _ if self.origin == Origin::NoFds => Some(
                "raise the open-file limit (`ulimit -n 1024` or more), then run the same command again (or `k5up resume JOB`)",
            ),
            _ if self.origin == Origin::Endpoint => Some(
                "check ST_AUTH (a Swift auth URL such as http://host:8080/auth/v1.0) or OS_AUTH_URL (Keystone's /v3)",
            ),
            None if self.class == Class::Transient => {
                Some("check the endpoint and the network; `k5up resume` continues the job")
            }
            _ => None,
        };
        let mut e = Error::new(kind, self.to_string());
        if let Some(h) = hint {
            e = e.hint(h);
        }
        // The whole server error (status, X-Trans-Id, class, origin) stays reachable.
        e.source = Some(Box::new(self));
        e
    }
}

impl std::error::Error for SwiftError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The transaction id of a response.
pub(crate) fn trans_id(h: &reqwest::header::HeaderMap) -> Option<String> {
    h.get("x-trans-id").or_else(|| h.get("x-openstack-request-id")).and_then(|v| v.to_str().ok()).map(str::to_string)
}

impl fmt::Display for SwiftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.op)?;
        if let Some(s) = self.status {
            write!(f, ": HTTP {s}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(t) = &self.trans_id {
            write!(f, " (X-Trans-Id: {t})")?;
        }
        Ok(())
    }
}

impl Retryable for SwiftError {
    fn class(&self) -> Class {
        self.class
    }
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    fn link_down(&self) -> bool {
        self.origin.is_link()
    }
    fn unreachable(&self) -> bool {
        self.origin.is_unreachable()
    }
}

/// The useful text of an error body: the message of a JSON error (Glance, Keystone,
/// vmimport), the text of an HTML page, at most 300 characters, with any TempURL
/// signature removed (a server may echo the URL it was given).
pub(crate) fn server_message(body: &str) -> String {
    let body = body.trim();
    let from_json = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| {
        ["/message", "/error/message", "/title", "/error/title"]
            .iter()
            .find_map(|p| v.pointer(p).and_then(|m| m.as_str()).map(str::to_string))
    });
    let text = match from_json {
        Some(m) => strip_tags(&m.replace("<br />", " ")),
        None if body.starts_with('<') => strip_tags(body),
        None => body.to_string(),
    };
    let text = redact_signatures(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    text.chars().take(300).collect()
}

/// Replaces the value of every `temp_url_sig=` by `…`.
pub(crate) fn redact_signatures(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("temp_url_sig=") {
        let (head, tail) = rest.split_at(i + "temp_url_sig=".len());
        out.push_str(head);
        out.push('…');
        let end = tail.find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace()).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_error_stays_reachable_from_the_library_error() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-trans-id", "tx123".parse().unwrap());
        let e = SwiftError::from_response("PUT x", 503, &h, "busy").into_error(ErrorKind::Resumable);
        assert_eq!(e.kind, ErrorKind::Resumable);
        let s = SwiftError::of(&e).expect("source kept");
        assert_eq!((s.status, s.trans_id.as_deref(), s.class), (Some(503), Some("tx123"), Class::Transient));
        assert_eq!((s.status, s.trans_id.as_deref()), (Some(503), Some("tx123")));
        assert!(std::error::Error::source(&e).is_some());
        // Found under another error too, and the I/O error under it by its value.
        let io = std::io::Error::from_raw_os_error(2);
        let e = SwiftError::source("PUT y", "cannot read the source").caused_by(io).into_error(ErrorKind::Resumable);
        let e = Error::failed("job j").caused_by(e);
        assert_eq!(SwiftError::of(&e).map(|s| s.origin), Some(Origin::Source));
        assert_eq!((e.os_error(), e.io_kind()), (Some(2), Some(std::io::ErrorKind::NotFound)));
    }

    #[test]
    fn retry_after_in_both_forms_and_never_a_panic() {
        let now: jiff::Timestamp = "2026-12-01T06:00:00Z".parse().unwrap();
        let p = |v: &str| parse_retry_after(v, now);
        assert_eq!(p("2"), Some(Duration::from_secs(2)));
        assert_eq!(p(" 0.5 "), Some(Duration::from_millis(500)));
        // HTTP-date (IMF-fixdate), which was not parsed before.
        assert_eq!(p("Tue, 01 Dec 2026 06:00:30 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(p("Tue, 01 Dec 2026 05:00:00 GMT"), Some(Duration::ZERO), "a date in the past");
        assert_eq!(p("Fri, 01 Jan 2100 00:00:00 GMT"), Some(MAX_RETRY_AFTER), "capped");
        assert_eq!(p("1e30"), Some(MAX_RETRY_AFTER));
        for junk in ["", "-1", "NaN", "inf", "soon", "Tue, 99 Dec 2026", "\u{0669}"] {
            assert_eq!(p(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn messages_are_extracted_and_signatures_removed() {
        let glance = r#"{"message": "URI for web-download does not pass filtering: http://localhost:8083/v1/AUTH_x/c/o?temp_url_sig=875c69&temp_url_expires=17<br /><br />\n\n\n", "code": "400 Bad Request", "title": "Bad Request"}"#;
        let m = server_message(glance);
        assert_eq!(
            m,
            "URI for web-download does not pass filtering: http://localhost:8083/v1/AUTH_x/c/o?temp_url_sig=…&temp_url_expires=17"
        );
        assert_eq!(server_message(r#"{"error": {"code": 400, "message": "os_type bad"}}"#), "os_type bad");
        assert!(server_message("<html><h1>Unauthorized</h1>go away</html>").contains("go away"));
        assert_eq!(redact_signatures("a temp_url_sig=abc x temp_url_sig=def&y"), "a temp_url_sig=… x temp_url_sig=…&y");
    }
}
