//! Host names to addresses for the HTTP client: the system's resolver (getaddrinfo,
//! on a blocking thread, as reqwest's own default), except for names that never
//! resolve. A failure is an [`UnknownHost`], which [`super::SwiftError::transport`]
//! recognises by its type wherever it sits in the error's chain, never by its text.
//!
//! Reference: RFC 6761 §6.4 (`invalid.`: resolvers "SHOULD always return immediate
//! negative responses"; glibc asks the configured name server anyway).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A host name that does not resolve to any address.
#[derive(Debug, Clone)]
pub(crate) struct UnknownHost {
    /// The name, as in the URL.
    pub host: String,
    /// Why: the resolver's words, or that the name is reserved.
    pub reason: String,
    /// The resolver's error, kept for its value: a lookup that failed for want of
    /// file descriptors (`EAI_SYSTEM` with `EMFILE`) is found by its OS error.
    pub cause: Option<Arc<std::io::Error>>,
}

impl fmt::Display for UnknownHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the host name {} does not resolve ({})", self.host, self.reason)
    }
}

impl std::error::Error for UnknownHost {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// True for a name under the special-use domain `invalid.` (RFC 6761), which no
/// resolver may answer: refused without sending a query.
pub(crate) fn reserved_invalid(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "invalid" || h.ends_with(".invalid")
}

/// The resolver of k5up's HTTP client.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Resolver;

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let unknown = |reason: String, cause: Option<std::io::Error>| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(UnknownHost { host: host.clone(), reason, cause: cause.map(Arc::new) })
            };
            if reserved_invalid(&host) {
                return Err(unknown("a name under `.invalid`, reserved never to resolve (RFC 6761)".into(), None));
            }
            // The port is set by the caller (the URL's, or the scheme's default).
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| unknown(e.to_string(), Some(e)))?
                .collect();
            if addrs.is_empty() {
                return Err(unknown("no address".into(), None));
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_are_reserved() {
        for h in ["nonexistent.invalid", "a.b.INVALID", "x.invalid.", "invalid"] {
            assert!(reserved_invalid(h), "{h}");
        }
        for h in ["invalid.example.com", "localhost", "swift.example.org", "notinvalid"] {
            assert!(!reserved_invalid(h), "{h}");
        }
    }

    #[tokio::test]
    async fn an_invalid_name_fails_without_a_lookup_and_localhost_resolves() {
        let r = Resolver;
        let e = match r.resolve("nonexistent.invalid".parse().unwrap()).await {
            Err(e) => e,
            Ok(_) => panic!("resolved"),
        };
        let u = e.downcast_ref::<UnknownHost>().expect("typed");
        assert_eq!(u.host, "nonexistent.invalid");
        assert!(u.reason.contains("RFC 6761"), "{u}");
        // /etc/hosts: no query leaves the machine.
        let addrs: Vec<SocketAddr> = r.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(), "{addrs:?}");
    }
}
