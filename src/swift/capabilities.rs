//! What the store can do, in one place: [`Capabilities`], read from `GET /info`
//! beside the storage URL (Swift's documented defaults where `/info` is hidden or
//! unreadable), once per storage URL and kept on the [`Swift`] client. Every
//! decision that depends on the server asks it.
//!
//! Reference: <https://docs.openstack.org/swift/latest/api/discoverability.html>

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Origin, Swift, SwiftError, url};
use crate::retry::{self, Class};

/// The limits of the server that matter to the plan: the part of [`Capabilities`] a
/// job keeps in its record. The journal stores it (bincode, and JSON in
/// `birth.json`): its fields, their order and their types are that record's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest single object (`swift.max_file_size`).
    pub max_file_size: u64,
    /// SLO limits, when the server has the SLO middleware.
    pub slo: Option<SloLimits>,
    /// Largest page of a container listing (`swift.container_listing_limit`). Kept
    /// for the record's layout only: nothing decides on it ([`Swift::list`] reads
    /// pages until an empty one, whatever their size).
    container_listing_limit: u64,
    /// True when these came from `/info`, false when they are Swift's documented defaults.
    pub from_info: bool,
}

/// The SLO middleware's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SloLimits {
    /// Entries per manifest.
    pub max_manifest_segments: u64,
    /// Bytes per manifest body.
    pub max_manifest_size: u64,
    /// Smallest segment other than the last.
    pub min_segment_size: u64,
}

impl Limits {
    /// Swift's documented defaults, used when `/info` is disabled.
    pub fn swift_defaults() -> Self {
        Limits {
            max_file_size: 5 * (1 << 30) + 2,
            slo: Some(SloLimits { max_manifest_segments: 1000, max_manifest_size: 8 << 20, min_segment_size: 1 }),
            container_listing_limit: 10_000,
            from_info: false,
        }
    }
}

/// What a store does where Swift's API leaves room (Ceph RGW differs from Swift on
/// each), found by [`Swift::probe_store`] on tiny objects and kept in the journal per
/// storage URL, and in each job for the job's life (its cuts and manifest follow
/// them). Serialized by name (JSON) and by field order (bincode): append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreTraits {
    /// An SLO manifest PUT may carry an `Etag` header (RGW answers 422 to any).
    pub manifest_etag: bool,
    /// `GET ?multipart-manifest=get` gives the manifest back (RGW: an empty body).
    pub manifest_readable: bool,
    /// An SLO entry's `range` is honoured (RGW accepts it and puts the whole segment in).
    pub slo_ranges: bool,
    /// An SLO may name an SLO (a sub-manifest; RGW: 400).
    pub nested_slo: bool,
    /// A server-side copy of an SLO with a `Range` writes a plain object of those
    /// bytes (RGW copies the whole source, and a copy of an SLO is an SLO).
    pub copy_range: bool,
}

impl StoreTraits {
    /// Swift's behaviour: what every job planned before the probes existed assumed.
    pub const fn swift() -> Self {
        StoreTraits {
            manifest_etag: true,
            manifest_readable: true,
            slo_ranges: true,
            nested_slo: true,
            copy_range: true,
        }
    }

    /// The least any store tested does (RGW's): assumed when a probe cannot run.
    pub const fn least() -> Self {
        StoreTraits {
            manifest_etag: false,
            manifest_readable: false,
            slo_ranges: false,
            nested_slo: false,
            copy_range: false,
        }
    }

    /// Zeros can be made on the server at any length (a ranged copy of an SLO maker,
    /// ranges of one zero object): else each zero object is sent once, whole.
    pub fn makes_zeros(&self) -> bool {
        self.slo_ranges && self.copy_range
    }

    /// One line for `--dry-run` and the log: what differs from Swift.
    pub fn describe(&self) -> String {
        if *self == StoreTraits::swift() {
            return "as Swift (manifest ETag checked, manifests readable, SLO ranges, nested SLO, ranged copies)"
                .into();
        }
        let yn = |b: bool| if b { "yes" } else { "no" };
        format!(
            "manifest Etag header accepted: {}; manifest readable back: {}; SLO ranges honoured: {}; nested SLO: {}; ranged copy of an SLO: {}",
            yn(self.manifest_etag),
            yn(self.manifest_readable),
            yn(self.slo_ranges),
            yn(self.nested_slo),
            yn(self.copy_range)
        )
    }
}

/// A digest a TempURL signature can be made with (`tempurl.allowed_digests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TempUrlDigest {
    /// HMAC-SHA1 (deprecated by Swift).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl TempUrlDigest {
    /// The name `/info` uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TempUrlDigest::Sha1 => "sha1",
            TempUrlDigest::Sha256 => "sha256",
            TempUrlDigest::Sha512 => "sha512",
        }
    }

    /// Its name in messages (`HMAC-SHA1`, with the prefix).
    pub(crate) fn label(self) -> &'static str {
        match self {
            TempUrlDigest::Sha1 => "SHA1",
            TempUrlDigest::Sha256 => "SHA256",
            TempUrlDigest::Sha512 => "SHA512",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [TempUrlDigest::Sha1, TempUrlDigest::Sha256, TempUrlDigest::Sha512].into_iter().find(|d| d.as_str() == s)
    }
}

/// What the store says it can do: read from `/info`, kept per storage URL on the
/// [`Swift`] client. What it does where `/info` is silent is [`StoreTraits`],
/// probed once per storage URL and kept in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// The limits a plan is made for (and its job keeps): `max_file_size`, the SLO
    /// section (SLO offered, with its limits), whether they came from `/info`.
    pub limits: Limits,
    /// DLO offered. Swift's `dlo` middleware does not say itself in `/info`:
    /// assumed true, as it is in Swift's default pipeline.
    pub dlo: bool,
    /// Digests TempURL signatures may use (`tempurl.allowed_digests`), as listed.
    /// Empty when `/info` lists none (RGW and older Swift have a `tempurl` section
    /// without the list) or there is no `/info`: [`Capabilities::tempurl_digest`]
    /// then falls back to SHA-1, the one digest those stores accept.
    pub tempurl_digests: Vec<TempUrlDigest>,
}

impl Capabilities {
    /// Swift's documented defaults, assumed when `/info` is disabled.
    pub(crate) fn swift_defaults() -> Self {
        Capabilities { limits: Limits::swift_defaults(), dlo: true, tempurl_digests: vec![] }
    }

    /// What a `/info` answer says; Swift's defaults for what it leaves out.
    pub(crate) fn from_info(v: &Value) -> Self {
        let d = Capabilities::swift_defaults();
        let dl = &d.limits;
        let ds = dl.slo.clone().expect("defaults have SLO");
        let num = |v: &Value, dflt: u64| v.as_u64().unwrap_or(dflt);
        let digests: Vec<TempUrlDigest> = v["tempurl"]["allowed_digests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| TempUrlDigest::parse(d.as_str()?))
            .collect();
        let limits = Limits {
            max_file_size: num(&v["swift"]["max_file_size"], dl.max_file_size),
            container_listing_limit: num(&v["swift"]["container_listing_limit"], dl.container_listing_limit),
            slo: v.get("slo").map(|s| SloLimits {
                max_manifest_segments: num(&s["max_manifest_segments"], ds.max_manifest_segments),
                max_manifest_size: num(&s["max_manifest_size"], ds.max_manifest_size),
                min_segment_size: num(&s["min_segment_size"], ds.min_segment_size),
            }),
            from_info: true,
        };
        Capabilities { limits, tempurl_digests: digests, ..d }
    }

    /// The digest to sign TempURLs with: the strongest the store lists (SHA-512,
    /// then SHA-256, then SHA-1); SHA-1 when it lists none (see
    /// [`Capabilities::tempurl_digests`]): RGW (16.2) accepts only SHA-1 and lists
    /// nothing, and Swift's own docs say a `tempurl` section without the list means
    /// "only HMAC-SHA1 is supported" (older clusters).
    pub(crate) fn tempurl_digest(&self) -> TempUrlDigest {
        [TempUrlDigest::Sha512, TempUrlDigest::Sha256, TempUrlDigest::Sha1]
            .into_iter()
            .find(|d| self.tempurl_digests.contains(d))
            .unwrap_or(TempUrlDigest::Sha1)
    }

    /// How [`Capabilities::tempurl_digest`] was chosen, for messages: listed by the
    /// store, or assumed.
    pub(crate) fn tempurl_digest_reason(&self) -> &'static str {
        if self.tempurl_digests.is_empty() {
            "assumed: the store's /info lists no tempurl.allowed_digests"
        } else {
            "the strongest the store's /info lists in tempurl.allowed_digests"
        }
    }
}

impl Swift {
    /// What the store of this account can do: read once per storage URL (`GET
    /// /info`; Swift's documented defaults when it is disabled or unreadable) and
    /// kept for every clone of this client.
    pub(crate) async fn capabilities(&self) -> Result<Capabilities, SwiftError> {
        let storage = self.storage_url().await?;
        let mut known = self.capabilities.lock().await;
        if let Some(c) = known.get(&storage) {
            return Ok(c.clone());
        }
        let c = self.read_capabilities(&storage).await?;
        known.insert(storage, c.clone());
        Ok(c)
    }

    /// The server's limits (from [`Swift::capabilities`]).
    pub(crate) async fn limits(&self) -> Result<Limits, SwiftError> {
        Ok(self.capabilities().await?.limits)
    }

    /// The capabilities from `GET /info` beside `storage`; Swift's documented
    /// defaults when `/info` is disabled or unreadable.
    async fn read_capabilities(&self, storage: &str) -> Result<Capabilities, SwiftError> {
        let Some(url) = url::info_url(storage) else {
            tracing::info!("{storage} is not a URL /info can be found beside: using Swift's default limits");
            return Ok(Capabilities::swift_defaults());
        };
        let op = format!("GET {url}");
        let resp = retry::retry(self.policy(), &op, |_| async {
            self.session.http().get(&url).send().await.map_err(|e| SwiftError::transport(&op, &e))
        })
        .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            // A Swift proxy answers /info (403 when its operator hid it): a 404 is most
            // often a URL that is no Swift account at all. The account decides.
            self.account_answers(&op, &url, storage).await?;
            tracing::info!("{url} answered 404, but the account answers: using Swift's default limits");
            return Ok(Capabilities::swift_defaults());
        }
        if !resp.status().is_success() {
            tracing::info!("{url} answered {}: using Swift's default limits", resp.status());
            return Ok(Capabilities::swift_defaults());
        }
        match resp.json::<Value>().await {
            Ok(v) => Ok(Capabilities::from_info(&v)),
            Err(e) => {
                tracing::warn!("{url}: unreadable ({e}); using Swift's default limits");
                Ok(Capabilities::swift_defaults())
            }
        }
    }

    /// After `/info` answered 404: `HEAD` of the account; a 404 there too means the
    /// storage URL is not a Swift account (an error of origin `Endpoint`).
    async fn account_answers(&self, op: &str, info: &str, storage: &str) -> Result<(), SwiftError> {
        match self.send_account(&format!("HEAD {storage}"), Method::HEAD, |r| r).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Err(SwiftError {
                origin: Origin::Endpoint,
                trans_id: e.trans_id,
                ..SwiftError::local(
                    op,
                    format!("this is not a Swift storage URL: {info} and the account {storage} both answered HTTP 404"),
                    Class::Fatal,
                )
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fills_what_it_says_and_defaults_the_rest() {
        let v: Value = serde_json::from_str(
            r#"{"swift": {"max_file_size": 16777216, "container_listing_limit": 500},
                "slo": {"max_manifest_segments": 16},
                "tempurl": {"allowed_digests": ["sha1", "sha512", "md4"]}}"#,
        )
        .unwrap();
        let c = Capabilities::from_info(&v);
        let l = &c.limits;
        assert_eq!((l.max_file_size, l.container_listing_limit, l.from_info), (16 << 20, 500, true));
        let s = l.slo.clone().unwrap();
        assert_eq!((s.max_manifest_segments, s.max_manifest_size, s.min_segment_size), (16, 8 << 20, 1));
        assert_eq!(c.tempurl_digests, [TempUrlDigest::Sha1, TempUrlDigest::Sha512]);
        assert_eq!(c.tempurl_digest(), TempUrlDigest::Sha512);
        assert!(c.dlo, "assumed");

        let c = Capabilities::from_info(&serde_json::json!({"swift": {}}));
        assert!(c.limits.slo.is_none(), "no slo section: no SLO");
        assert_eq!(c.tempurl_digest(), TempUrlDigest::Sha1, "no tempurl section: SHA-1");
    }

    /// The strongest digest listed; SHA-1 where none is (RGW, older Swift, no /info).
    #[test]
    fn tempurl_digest_is_the_strongest_listed_else_sha1() {
        let with = |list: serde_json::Value| Capabilities::from_info(&serde_json::json!({"tempurl": list}));
        let pick = |list: &[&str]| with(serde_json::json!({"allowed_digests": list})).tempurl_digest();
        assert_eq!(pick(&["sha1", "sha256", "sha512"]), TempUrlDigest::Sha512);
        assert_eq!(pick(&["sha512", "sha1"]), TempUrlDigest::Sha512, "order does not matter");
        assert_eq!(pick(&["sha256", "sha1"]), TempUrlDigest::Sha256);
        assert_eq!(pick(&["sha1"]), TempUrlDigest::Sha1);
        assert_eq!(pick(&["sha256"]), TempUrlDigest::Sha256);
        // Names no store should sign with are ignored; nothing usable left: SHA-1.
        assert_eq!(pick(&["md5", "sha384"]), TempUrlDigest::Sha1);
        // RGW 16.2's /swift/info: a tempurl section with `methods` only.
        let rgw = with(serde_json::json!({"methods": ["GET", "HEAD", "PUT", "POST", "DELETE"]}));
        assert_eq!(rgw.tempurl_digest(), TempUrlDigest::Sha1);
        assert!(rgw.tempurl_digest_reason().starts_with("assumed"), "{}", rgw.tempurl_digest_reason());
        // No /info at all (hidden, unreadable).
        let none = Capabilities::swift_defaults();
        assert_eq!(none.tempurl_digest(), TempUrlDigest::Sha1);
        assert!(none.tempurl_digests.is_empty());
        assert!(
            !with(serde_json::json!({"allowed_digests": ["sha256"]})).tempurl_digest_reason().starts_with("assumed")
        );
    }

    /// `Limits` is a journal record's layout (bincode: field order and types; JSON
    /// in `birth.json`: names too), as it was in `plan`.
    #[test]
    fn limits_layout_is_the_journals() {
        let l = Limits::swift_defaults();
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"max_file_size":5368709122,"slo":{"max_manifest_segments":1000,"max_manifest_size":8388608,"min_segment_size":1},"container_listing_limit":10000,"from_info":false}"#
        );
    }
}
