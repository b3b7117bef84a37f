//! The store probes: what `/info` does not say, found with a few requests on tiny
//! objects (a 4-byte segment and three small manifests) in a container of the
//! job's, deleted afterwards. Measured against Ceph RGW 16.2.15, which differs
//! from Swift on every one (`StoreTraits`).

use md5::{Digest, Md5};

use super::capabilities::StoreTraits;
use super::manifest::{Entry, HeartbeatResult, slo_body, slo_etag};
use super::{Swift, SwiftError};
use crate::retry::Class;

const SEGMENT: &[u8] = b"abcd";

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

/// A refusal (a 4xx or a check that failed) says "no"; an outage is an error.
fn refused(e: &SwiftError) -> bool {
    e.class == Class::Fatal
}

fn written(r: &HeartbeatResult) -> bool {
    r.status == 200 || r.status == 201
}

impl Swift {
    /// Probes the store's behaviour in `container` (which exists), with objects
    /// named `prefix` + a letter, every one deleted afterwards (also when a probe
    /// fails). About ten small requests.
    pub(crate) async fn probe_store(&self, container: &str, prefix: &str) -> Result<StoreTraits, SwiftError> {
        // What a probe killed midway left (under the same parent prefix) goes first.
        let parent = prefix.trim_end_matches('/').rsplit_once('/').map_or("", |(p, _)| p);
        if !parent.is_empty() {
            for e in self.list(container, &format!("{parent}/")).await? {
                let _ = self.delete(container, &e.name, "").await;
            }
        }
        let names: Vec<String> = ["a", "m", "n", "w", "c"].iter().map(|l| format!("{prefix}{l}")).collect();
        let r = self.probes(container, &names).await;
        for n in &names {
            if let Err(e) = self.delete(container, n, "").await {
                tracing::warn!("store probe: {container}/{n} could not be deleted ({e}); delete it by hand");
            }
        }
        r
    }

    async fn probes(&self, container: &str, n: &[String]) -> Result<StoreTraits, SwiftError> {
        let (seg, ranged, nested, whole2, copy) = (&n[0], &n[1], &n[2], &n[3], &n[4]);
        let seg_md5 = md5_hex(SEGMENT);
        let op = format!("PUT store probe {container}/{seg}");
        self.put_small(&op, container, seg, "", SEGMENT.to_vec(), &[("ETag", seg_md5.clone())]).await?;
        let path = format!("/{container}/{seg}");
        let mut t = StoreTraits::least();

        // A manifest of bytes 1-2 of the segment: with its ETag in the header, then without.
        let entry = Entry { path: path.clone(), etag: seg_md5.clone(), size_bytes: 4, range: Some("1-2".into()) };
        let body = slo_body(std::slice::from_ref(&entry));
        let want = slo_etag(std::slice::from_ref(&entry));
        let mut made = false;
        match self.put_slo(container, ranged, body.clone(), Some(&want)).await {
            Ok(r) if written(&r) => (t.manifest_etag, made) = (true, true),
            Ok(_) => {}
            Err(e) if refused(&e) => {}
            Err(e) => return Err(e),
        }
        if !made {
            match self.put_slo(container, ranged, body, None).await {
                Ok(r) if written(&r) => made = true,
                Ok(_) => {}
                Err(e) if refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if made {
            let got = self.get(container, ranged, "").await?;
            let bytes =
                got.bytes().await.map_err(|e| SwiftError::transport(&format!("GET {container}/{ranged}"), &e))?;
            t.slo_ranges = &bytes[..] == b"bc";
            let m = self.get(container, ranged, "multipart-manifest=get").await?;
            let body = m.bytes().await.map_err(|e| SwiftError::transport(&format!("GET {container}/{ranged}"), &e))?;
            t.manifest_readable = super::manifest::parse_stored(&body)
                .is_ok_and(|e| e.len() == 1 && e[0].path == path.trim_start_matches('/'));
        }

        // Two whole entries: "abcdabcd", a manifest every store takes.
        let whole = vec![Entry::whole(path.clone(), seg_md5.clone(), 4); 2];
        let whole_etag = slo_etag(&whole);
        let etag = t.manifest_etag.then_some(whole_etag.as_str());
        let r = self.put_slo(container, whole2, slo_body(&whole), etag).await?;
        if !written(&r) {
            return Err(SwiftError::local(
                &format!("PUT store probe manifest {container}/{whole2}"),
                format!("the store refused a manifest of two whole segments: {} {}", r.status, r.body.trim()),
                Class::Fatal,
            ));
        }

        // An SLO naming that SLO.
        let sub = Entry::whole(format!("/{container}/{whole2}"), whole_etag.clone(), 8);
        let etag = t.manifest_etag.then(|| slo_etag(std::slice::from_ref(&sub)));
        match self.put_slo(container, nested, slo_body(&[sub]), etag.as_deref()).await {
            Ok(r) => t.nested_slo = written(&r),
            Err(e) if refused(&e) => {}
            Err(e) => return Err(e),
        }

        // Bytes 2-5 of that SLO, copied on the server: a plain object "cdab"?
        let op = format!("COPY store probe {container}/{copy}");
        let from = (container, whole2.as_str());
        match self.copy_range(&op, container, copy, from, (2, 5), &md5_hex(b"cdab")).await {
            Ok(()) => t.copy_range = true,
            Err(e) if refused(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(t)
    }
}
