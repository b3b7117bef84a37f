//! Secrets (passwords, keys, tokens): never printed, never serialized, sent only as
//! sensitive header values.

use std::fmt;

use super::error::SwiftError;
use crate::retry::Class;

/// A secret string: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub(crate) fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as a header value marked sensitive: the HTTP stack never prints
    /// it (its `Debug` shows `Sensitive`) and HTTP/2 never indexes it.
    pub(crate) fn header(&self, op: &str) -> Result<reqwest::header::HeaderValue, SwiftError> {
        let mut v = reqwest::header::HeaderValue::from_str(&self.0).map_err(|_| {
            SwiftError::local(op, "a credential or token holds characters a header cannot carry", Class::Fatal)
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_header_is_marked_sensitive_and_never_printed() {
        let v = Secret::new("tok-123-secret").header("t").unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("tok-123"), "{v:?}");
        assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
        assert!(Secret::new("bad\nvalue").header("t").is_err());
    }
}
