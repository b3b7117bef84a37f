//! Swift TempURLs for Glance's web-download: the image crosses the user's link once.
//!
//! The key is an account key: a container key cannot reach segments in another
//! container (Swift answers 409), and k5up keeps segments in `<container>_segments`.
//! A key the account already has is used as it is, never replaced; only an account
//! without any key gets one, in the second slot (`Temp-URL-Key-2`). Keys are secrets:
//! they are never logged or journaled, and are read from the account on every run.
//! So is a signed URL ([`TempUrl`]): it reads the image until it expires.
//!
//! Before Glance gets a URL, [`check`] GETs its byte 0 without a token: a store that
//! refuses the digest (RGW takes SHA-1 only) or the key is found here, in seconds,
//! not as a failed import after Glance's retries.

use std::fmt;

use hmac::{KeyInit, Mac};

use crate::swift::error::redact_signatures;
use crate::swift::{Secret, Swift, SwiftError, TempUrlDigest};

/// How long a TempURL handed to Glance stays valid.
pub(crate) const LIFETIME_SECS: u64 = 24 * 3600;

/// The account's TempURL key: an existing one, or a new one set in the second slot.
pub(crate) async fn account_key(swift: &Swift) -> Result<(Secret, bool), SwiftError> {
    let meta = swift.account_meta().await?;
    for name in ["x-account-meta-temp-url-key", "x-account-meta-temp-url-key-2"] {
        if let Some((_, k)) = meta.iter().find(|(n, v)| n == name && !v.is_empty()) {
            return Ok((Secret::new(k), false));
        }
    }
    let bytes = crate::import::random_bytes::<32>().map_err(|e| {
        let why = format!("no key made: the operating system's random source failed: {e}");
        SwiftError::local("make a TempURL key", why, crate::retry::Class::Fatal).caused_by(e)
    })?;
    let key = Secret::new(hex::encode(bytes));
    swift.set_account_secret("Temp-URL-Key-2", &key).await?;
    Ok((key, true))
}

/// A signed TempURL: a read credential for the object until it expires. Its
/// signature is a secret: `Debug` and [`TempUrl::shown`] mask it, nothing
/// serializes it, and only [`TempUrl::expose`] gives the URL itself, to the two
/// requests that need it (the [`check`], Glance's import request).
pub(crate) struct TempUrl {
    url: Secret,
    digest: TempUrlDigest,
}

impl TempUrl {
    /// The URL itself, for the request that sends it.
    pub(crate) fn expose(&self) -> &str {
        self.url.expose()
    }

    /// The URL with its signature masked (`temp_url_sig=…`), for messages.
    pub(crate) fn shown(&self) -> String {
        redact_signatures(self.url.expose())
    }

    /// The digest it is signed with.
    pub(crate) fn digest(&self) -> TempUrlDigest {
        self.digest
    }
}

impl fmt::Debug for TempUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempUrl").field("url", &self.shown()).field("digest", &self.digest).finish()
    }
}

/// A GET TempURL of `container`/`object` in the account at `account` (`/v1/AUTH_x`,
/// not percent-encoded), signed with HMAC-`digest` (hex, which Swift tells apart by
/// its length), on `origin` (`http://host:port`). Swift signs the decoded path; the
/// URL carries the object as one segment (see [`crate::swift::object_path`]) so that
/// no client on the way resolves `..` in it.
pub(crate) fn sign(
    digest: TempUrlDigest,
    origin: &str,
    account: &str,
    container: &str,
    object: &str,
    key: &Secret,
    expires: u64,
) -> TempUrl {
    let body = format!("GET\n{expires}\n{account}/{container}/{object}");
    let sig = match digest {
        TempUrlDigest::Sha1 => hmac_hex::<hmac::Hmac<sha1::Sha1>>(key, &body),
        TempUrlDigest::Sha256 => hmac_hex::<hmac::Hmac<sha2::Sha256>>(key, &body),
        TempUrlDigest::Sha512 => hmac_hex::<hmac::Hmac<sha2::Sha512>>(key, &body),
    };
    let enc = format!("{}/{}", crate::swift::enc_object(account), crate::swift::object_path(container, object));
    TempUrl { url: Secret::new(format!("{origin}{enc}?temp_url_sig={sig}&temp_url_expires={expires}")), digest }
}

/// What one GET of a TempURL's byte 0, without a token, says of it.
#[derive(Debug)]
pub(crate) enum Reach {
    /// 200 or 206 (416 for an empty object): anyone with the URL can read the object.
    Works,
    /// 401 or 403: the store refuses the signature (its digest, or the key).
    Refused(SwiftError),
    /// Another 4xx (404: the URL does not lead to the object).
    Broken(SwiftError),
    /// Not known (a 5xx, the network): Glance gets the URL anyway, and retries.
    Unknown(SwiftError),
}

/// One `GET` of byte 0 (`Range: bytes=0-0`) of `url` with no token: what Glance will
/// meet. `what` names the object (`container/object`). Neither the answer's body
/// (beyond an error's first words, signatures masked) nor the URL reaches the result.
pub(crate) async fn check(http: &reqwest::Client, url: &TempUrl, what: &str) -> Reach {
    let op = format!("GET byte 0 of {what} by its TempURL (HMAC-{}, no token)", url.digest().label());
    let resp = match http.get(url.expose()).header(reqwest::header::RANGE, "bytes=0-0").send().await {
        Ok(r) => r,
        // reqwest names the URL in its errors: dropped here, signature and all.
        Err(e) => return Reach::Unknown(SwiftError::transport(&op, &e.without_url())),
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() || status == 416 {
        return Reach::Works;
    }
    let headers = resp.headers().clone();
    let body = if status < 500 { resp.text().await.unwrap_or_default() } else { String::new() };
    let e = SwiftError::from_response(&op, status, &headers, &body);
    match status {
        401 | 403 => Reach::Refused(e),
        400..=499 => Reach::Broken(e),
        _ => Reach::Unknown(e),
    }
}

fn hmac_hex<M: Mac + KeyInit>(key: &Secret, body: &str) -> String {
    let mut mac = <M as KeyInit>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_swift_docs_recipe() {
        // Python: hmac.new(b"mykey", b"GET\n1700000000\n/v1/AUTH_a/c/o", sha256).hexdigest()
        let url = sign(
            TempUrlDigest::Sha256,
            "http://127.0.0.1:8083",
            "/v1/AUTH_a",
            "c",
            "o",
            &Secret::new("mykey"),
            1_700_000_000,
        );
        assert_eq!(url.digest(), TempUrlDigest::Sha256);
        let url = url.expose();
        assert!(url.starts_with("http://127.0.0.1:8083/v1/AUTH_a/c%2Fo?temp_url_sig="), "{url}");
        assert!(url.ends_with("&temp_url_expires=1700000000"));
        let sig = url.split("temp_url_sig=").nth(1).unwrap().split('&').next().unwrap();
        assert_eq!(sig, "1b2618118ea6cef7046d1641fc84c989acecf59cd4a1b4f3b1ec9b7677e6d617");
        // A space in the object name is encoded in the URL, not in the signed path.
        let url = sign(TempUrlDigest::Sha256, "http://h", "/v1/AUTH_a", "c", "my image.vmdk", &Secret::new("k"), 1);
        let url = url.expose();
        assert!(url.contains("/c%2Fmy%20image.vmdk?"), "{url}");
        // Dot segments stay inside one path segment: nothing on the way can resolve them.
        let url = sign(TempUrlDigest::Sha256, "http://h", "/v1/AUTH_a", "c", "../x/./y", &Secret::new("k"), 1);
        let url = url.expose();
        assert!(url.contains("/v1/AUTH_a/c%2F..%2Fx%2F.%2Fy?"), "{url}");
        // The other digests Swift allows, hex too (Swift tells them apart by length).
        // Python: hmac.new(b"mykey", b"GET\n1700000000\n/v1/AUTH_a/c/o", sha1 / sha512).hexdigest()
        for (d, want) in [
            (TempUrlDigest::Sha1, "cf1cb4ca7ffbf542fd4bd4792d5feaafb1e6bda3"),
            (
                TempUrlDigest::Sha512,
                "5f70b9d3bb8277b0feb326048165d0218e1132943c31a19ace674bc8d4b3b6637d31e0e61e0af6bda39093c007eeff0f01874c702bedb4dce84cbcb022b1ede2",
            ),
        ] {
            let url = sign(d, "http://h", "/v1/AUTH_a", "c", "o", &Secret::new("mykey"), 1_700_000_000);
            let sig = url.expose().split("temp_url_sig=").nth(1).unwrap().split('&').next().unwrap();
            assert_eq!(sig, want, "{d:?}");
        }
    }

    /// The signature is a secret: what a message, a log line or `Debug` shows of a
    /// TempURL masks it.
    #[test]
    fn a_signed_url_never_shows_its_signature() {
        let url = sign(TempUrlDigest::Sha1, "http://h:8080", "/v1/AUTH_a", "c", "o", &Secret::new("mykey"), 7);
        let sig = url.expose().split("temp_url_sig=").nth(1).unwrap().split('&').next().unwrap().to_string();
        assert_eq!(sig.len(), 40, "HMAC-SHA1 in hex");
        for shown in [url.shown(), format!("{url:?}")] {
            assert!(!shown.contains(&sig), "{shown}");
            assert!(shown.contains("http://h:8080/v1/AUTH_a/c%2Fo?temp_url_sig=…&temp_url_expires=7"), "{shown}");
        }
        assert!(format!("{url:?}").contains("Sha1"));
    }
}
