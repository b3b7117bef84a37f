//! Manifests, pure: SLO bodies (nested when one manifest cannot hold every
//! segment), the ETags Swift will report, the SLO heartbeat response, and an SLO
//! manifest as the server gives it back (`?multipart-manifest=get`).
//!
//! Reference: <https://docs.openstack.org/swift/latest/overview_large_objects.html>

use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::Value;

/// MD5 hex of `data`: how Swift computes a large object's ETag from its entries'.
fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// One entry of an SLO manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    /// `/container/object`, not URL-encoded.
    pub path: String,
    /// MD5 hex of the segment, or the ETag (unquoted) of a sub-manifest.
    pub etag: String,
    /// Bytes of the segment (all of it, also when `range` takes a part).
    pub size_bytes: u64,
    /// `"first-last"` (inclusive): only these bytes of the segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

impl Entry {
    /// A whole segment.
    pub(crate) fn whole(path: String, etag: String, size_bytes: u64) -> Self {
        Entry { path, etag, size_bytes, range: None }
    }

    /// What this entry adds to the manifest's ETag: its ETag, and for a range
    /// `"<etag>:<first>-<last>;"`, as Swift computes it.
    pub(crate) fn etag_part(&self) -> String {
        match &self.range {
            Some(r) => format!("{}:{r};", self.etag),
            None => self.etag.clone(),
        }
    }

    /// Bytes this entry puts in the object.
    pub(crate) fn content_len(&self) -> u64 {
        self.range
            .as_deref()
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some(b.parse::<u64>().ok()? + 1 - a.parse::<u64>().ok()?))
            .unwrap_or(self.size_bytes)
    }
}

/// The ETag Swift gives an SLO of `entries`.
pub(crate) fn slo_etag(entries: &[Entry]) -> String {
    let cat: String = entries.iter().map(Entry::etag_part).collect();
    md5_hex(cat.as_bytes())
}

/// A sub-manifest to PUT before the top one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubManifest {
    /// Its object name (in the segment container).
    pub name: String,
    /// Its entries.
    pub entries: Vec<Entry>,
}

/// The manifests of one SLO: sub-manifests (deepest level first) and the top one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SloLayout {
    /// Sub-manifests, in the order they must be written.
    pub subs: Vec<SubManifest>,
    /// Entries of the top manifest.
    pub top: Vec<Entry>,
}

/// The ETag Swift gives a large object: MD5 of its entries' ETags concatenated.
pub(crate) fn large_object_etag<'a>(etags: impl IntoIterator<Item = &'a str>) -> String {
    let cat: String = etags.into_iter().collect();
    md5_hex(cat.as_bytes())
}

/// Lays `segments` out in manifests of at most `per_manifest` entries. A sub-manifest
/// at `level` number `i` is named by `sub_name(level, i)` and lives in `container`.
pub(crate) fn slo_layout(
    segments: Vec<Entry>,
    per_manifest: usize,
    container: &str,
    sub_name: impl Fn(usize, usize) -> String,
) -> SloLayout {
    let per = per_manifest.max(2);
    let mut subs = vec![];
    let mut level_entries = segments;
    let mut level = 1;
    while level_entries.len() > per {
        let mut next = vec![];
        for (i, chunk) in level_entries.chunks(per).enumerate() {
            let name = sub_name(level, i);
            next.push(Entry::whole(
                format!("/{container}/{name}"),
                slo_etag(chunk),
                chunk.iter().map(Entry::content_len).sum(),
            ));
            subs.push(SubManifest { name, entries: chunk.to_vec() });
        }
        level_entries = next;
        level += 1;
    }
    SloLayout { subs, top: level_entries }
}

/// The JSON body of a manifest PUT.
pub(crate) fn slo_body(entries: &[Entry]) -> Vec<u8> {
    serde_json::to_vec(entries).expect("manifest entries serialize")
}

/// The outcome of an SLO PUT with `heartbeat=on`, whose HTTP status is 202 at once
/// and whose real status is in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatResult {
    /// The real status code (201 on success).
    pub status: u16,
    /// The ETag Swift computed, unquoted.
    pub etag: Option<String>,
    /// Per-segment problems: (path, reason).
    pub errors: Vec<(String, String)>,
    /// The response body text Swift included.
    pub body: String,
}

/// Parses the body of a heartbeat SLO PUT (sent with `Accept: application/json`).
pub(crate) fn parse_heartbeat(body: &str) -> Option<HeartbeatResult> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let status = v["Response Status"].as_str()?.split_whitespace().next()?.parse().ok()?;
    let etag = v["Etag"].as_str().map(|s| s.trim_matches('"').to_string());
    let errors = v["Errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.get(0)?.as_str()?.to_string(), e.get(1)?.as_str()?.to_string())))
        .collect();
    let body = v["Response Body"].as_str().unwrap_or_default().to_string();
    Some(HeartbeatResult { status, etag, errors, body })
}

/// One entry of an SLO manifest as the server gives it back
/// (`GET ?multipart-manifest=get`): read leniently, a field that is missing or of
/// another type reads as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEntry {
    /// `container/object` (its `name`, the leading `/` removed), not URL-encoded.
    pub path: String,
    /// Bytes of the object it names (all of it, also when `range` takes a part).
    pub bytes: u64,
    /// Its `hash`: the MD5 hex of a segment, the ETag of a sub-manifest.
    pub hash: Option<String>,
    /// Its `range` (`"first-last"`, inclusive) as `(first, last)`, when it is one
    /// that holds bytes (`last >= first`).
    pub range: Option<(u64, u64)>,
    /// `sub_slo: true`: it names a manifest.
    pub sub_slo: bool,
}

impl StoredEntry {
    /// Container and object of the entry; `None` for a path without a `/`.
    pub(crate) fn container_object(&self) -> Option<(&str, &str)> {
        self.path.split_once('/')
    }

    /// Bytes of a ranged entry.
    pub(crate) fn range_len(&self) -> Option<u64> {
        self.range.map(|(a, b)| b - a + 1)
    }

    /// Bytes this entry puts in the object.
    pub(crate) fn content_len(&self) -> u64 {
        self.range_len().unwrap_or(self.bytes)
    }

    /// A whole sub-manifest, whose own entries stand for it (a range of one is a
    /// part of its bytes, never followed).
    pub(crate) fn is_sub_manifest(&self) -> bool {
        self.sub_slo && self.range.is_none()
    }

    /// The MD5 of what the entry puts in the object, when the server says it: a
    /// whole segment's hash (a range holds only part of it).
    pub(crate) fn whole_md5(&self) -> Option<&str> {
        self.hash.as_deref().filter(|_| self.range.is_none())
    }

    fn from_json(e: &Value) -> Self {
        let range = e["range"].as_str().and_then(|r| r.split_once('-')).and_then(|(a, b)| {
            let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
            (b >= a).then_some((a, b))
        });
        StoredEntry {
            path: e["name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
            bytes: e["bytes"].as_u64().unwrap_or(0),
            hash: e["hash"].as_str().map(str::to_string),
            range,
            sub_slo: e["sub_slo"].as_bool() == Some(true),
        }
    }
}

/// Parses an SLO manifest as the server gives it back (`?multipart-manifest=get`):
/// a JSON list of entries.
pub(crate) fn parse_stored(body: &[u8]) -> Result<Vec<StoredEntry>, serde_json::Error> {
    let entries: Vec<Value> = serde_json::from_slice(body)?;
    Ok(entries.iter().map(StoredEntry::from_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: usize) -> Entry {
        Entry::whole(format!("/c_segments/o/{i:08}"), md5_hex(i.to_string().as_bytes()), 10)
    }

    #[test]
    fn flat_and_nested_layouts() {
        let l = slo_layout((0..5).map(seg).collect(), 8, "c_segments", |a, b| format!("m/{a}/{b}"));
        assert!(l.subs.is_empty());
        assert_eq!(l.top.len(), 5);
        let l = slo_layout((0..100).map(seg).collect(), 8, "c_segments", |a, b| format!("m/{a}/{b}"));
        // 100 → 13 sub-manifests → 2 → top of 2
        assert_eq!(l.subs.len(), 13 + 2);
        assert_eq!(l.top.len(), 2);
        assert_eq!(l.top.iter().map(|e| e.size_bytes).sum::<u64>(), 1000);
        // The top ETag equals the flat ETag over sub-ETags, as Swift computes it.
        let sub0 = &l.subs[0];
        assert_eq!(sub0.entries.len(), 8);
        assert_eq!(l.subs[13].entries[0].etag, large_object_etag(sub0.entries.iter().map(|e| e.etag.as_str())));
    }

    #[test]
    fn ranged_entries_count_their_range_as_swift_does() {
        // Measured against the testbed's Swift: a manifest of a 3 MiB zero object
        // taken as 0-1048575 and a 16-byte object got ETag b53621175a5b21f6701beed7e44a22f5.
        let zeros = Entry {
            path: "/c/z".into(),
            etag: md5_hex(&vec![0u8; 3 << 20]),
            size_bytes: 3 << 20,
            range: Some("0-1048575".into()),
        };
        let small = Entry::whole("/c/s".into(), md5_hex(b"0123456789abcdef"), 16);
        assert_eq!(slo_etag(&[zeros.clone(), small]), "b53621175a5b21f6701beed7e44a22f5");
        assert_eq!(zeros.content_len(), 1 << 20);
        let l = slo_layout(vec![zeros; 3], 2, "c", |a, b| format!("m/{a}/{b}"));
        assert_eq!(
            l.top.iter().map(Entry::content_len).sum::<u64>(),
            3 << 20,
            "a sub-manifest's size is what it holds"
        );
        let v: Value = serde_json::from_slice(&slo_body(&l.top)).unwrap();
        assert!(v[0].get("range").is_none() && v[1].get("range").is_none());
        let v: Value = serde_json::from_slice(&slo_body(&l.subs[0].entries)).unwrap();
        assert_eq!(v[0]["range"], "0-1048575");
    }

    #[test]
    fn heartbeat_parse() {
        let ok = r#"{"Response Status": "201 Created", "Response Body": "", "Etag": "\"abc\"", "Last Modified": "x", "Errors": []}"#;
        let r = parse_heartbeat(&format!("    \n{ok}")).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.etag.as_deref(), Some("abc"));
        let bad = r#"{"Response Status": "400 Bad Request", "Response Body": "Bad Request", "Errors": [["/c/s1", "Etag Mismatch"], ["/c/s2", "404 Not Found"]]}"#;
        let r = parse_heartbeat(bad).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.errors.len(), 2);
        assert!(parse_heartbeat("<html>").is_none());
    }

    #[test]
    fn stored_manifest_parse() {
        let body = br#"[
            {"name": "/c_segments/o/a", "bytes": 10, "hash": "h1", "content_type": "x"},
            {"name": "/c_segments/z", "bytes": 3145728, "hash": "h2", "range": "0-1048575"},
            {"name": "/c_segments/sub", "bytes": 20, "hash": "h3", "sub_slo": true},
            {"name": "/c/s", "bytes": 5, "hash": "h4", "sub_slo": true, "range": "1-2"},
            {"name": "odd", "bytes": "7", "range": "5-1"}
        ]"#;
        let e = parse_stored(body).unwrap();
        assert_eq!(e[0].container_object(), Some(("c_segments", "o/a")));
        assert_eq!((e[0].content_len(), e[0].whole_md5()), (10, Some("h1")));
        assert_eq!((e[1].range_len(), e[1].content_len(), e[1].whole_md5()), (Some(1 << 20), 1 << 20, None));
        assert!(e[2].is_sub_manifest() && !e[3].is_sub_manifest());
        assert_eq!(e[3].content_len(), 2);
        assert_eq!((e[4].container_object(), e[4].bytes, e[4].range), (None, 0, None), "lenient");
        assert!(parse_stored(b"<html>").is_err());
        assert!(parse_stored(b"{}").is_err());
    }

    #[test]
    fn body_is_json_list() {
        let b = slo_body(&[seg(1)]);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v[0]["size_bytes"], 10);
    }
}
