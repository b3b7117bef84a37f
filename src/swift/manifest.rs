//! Manifests, pure: SLO bodies (nested when one manifest cannot hold every
//! segment), the ETags Swift will report, and the SLO heartbeat response.
//!
//! Reference: <https://docs.openstack.org/swift/latest/overview_large_objects.html>

use serde::Serialize;
use serde_json::Value;

use crate::source::md5_hex;

/// One entry of an SLO manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `/container/object`, not URL-encoded.
    pub path: String,
    /// MD5 hex of the segment, or the ETag (unquoted) of a sub-manifest.
    pub etag: String,
    /// Bytes.
    pub size_bytes: u64,
}

/// A sub-manifest to PUT before the top one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubManifest {
    /// Its object name (in the segment container).
    pub name: String,
    /// Its entries.
    pub entries: Vec<Entry>,
}

/// The manifests of one SLO: sub-manifests (deepest level first) and the top one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SloLayout {
    /// Sub-manifests, in the order they must be written.
    pub subs: Vec<SubManifest>,
    /// Entries of the top manifest.
    pub top: Vec<Entry>,
}

/// The ETag Swift gives a large object: MD5 of its entries' ETags concatenated.
pub fn large_object_etag<'a>(etags: impl IntoIterator<Item = &'a str>) -> String {
    let cat: String = etags.into_iter().collect();
    md5_hex(cat.as_bytes())
}

/// Lays `segments` out in manifests of at most `per_manifest` entries. A sub-manifest
/// at `level` number `i` is named by `sub_name(level, i)` and lives in `container`.
pub fn slo_layout(
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
            next.push(Entry {
                path: format!("/{container}/{name}"),
                etag: large_object_etag(chunk.iter().map(|e| e.etag.as_str())),
                size_bytes: chunk.iter().map(|e| e.size_bytes).sum(),
            });
            subs.push(SubManifest { name, entries: chunk.to_vec() });
        }
        level_entries = next;
        level += 1;
    }
    SloLayout { subs, top: level_entries }
}

/// The JSON body of a manifest PUT.
pub fn slo_body(entries: &[Entry]) -> Vec<u8> {
    serde_json::to_vec(entries).expect("manifest entries serialize")
}

/// The outcome of an SLO PUT with `heartbeat=on`, whose HTTP status is 202 at once
/// and whose real status is in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResult {
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
pub fn parse_heartbeat(body: &str) -> Option<HeartbeatResult> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: usize) -> Entry {
        Entry { path: format!("/c_segments/o/{i:08}"), etag: md5_hex(i.to_string().as_bytes()), size_bytes: 10 }
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
    fn body_is_json_list() {
        let b = slo_body(&[seg(1)]);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v[0]["size_bytes"], 10);
    }
}
