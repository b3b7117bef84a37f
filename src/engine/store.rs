//! What the object store does: probed once per storage URL (kept in the journal's
//! `stores/`, and in each new job), and the container names it refuses, found
//! before anything is sent.

use std::time::Instant;

use super::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::swift::StoreTraits;

/// What the store does, as a job's plan found it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreFound {
    /// Its traits.
    pub traits: StoreTraits,
    /// Where they come from, for `--dry-run`.
    pub how: &'static str,
}

impl Engine {
    /// The store's traits for a new job writing to `container`, its segments to
    /// `segment_container`: known from the journal, or probed now (in the segment
    /// container, created for the probe and deleted after it if it was missing).
    /// Both names are checked with the store first: one it refuses is bad input.
    pub(super) async fn store_for(
        &self,
        storage_url: &str,
        container: &str,
        segment_container: &str,
    ) -> Result<StoreFound> {
        let exists = self.check_container_name(container).await?;
        let seg_exists =
            if segment_container == container { exists } else { self.check_container_name(segment_container).await? };
        if let Some(traits) = self.root.store_of(storage_url) {
            return Ok(StoreFound { traits, how: "as probed before, kept in the journal" });
        }
        let started = Instant::now();
        let fail = |e: crate::swift::SwiftError| {
            e.into_error(ErrorKind::Resumable)
                .context("probing what the object store does (a few requests on tiny objects)")
        };
        let prefix = format!(".k5up-probe/{}/", crate::names::new_nonce()?);
        let mut made = false;
        let probed = async {
            made = !seg_exists && self.swift.ensure_container(segment_container).await?;
            self.swift.probe_store(segment_container, &prefix).await
        }
        .await;
        if made && let Err(e) = self.swift.delete_container(segment_container).await {
            tracing::warn!("the container {segment_container} made for the store probe could not be deleted: {e}");
        }
        let (traits, how) = match probed {
            Ok(t) => {
                // Kept to save the next run its probe; a journal that cannot be written
                // is said by the job's creation (a dry run creates none).
                if let Err(e) = self.root.put_store_of(storage_url, &t) {
                    tracing::debug!("the store probe's answer is not kept: {e}");
                }
                tracing::info!(
                    "object store {storage_url}: {} (probed in {} ms, kept in the journal)",
                    t.describe(),
                    started.elapsed().as_millis()
                );
                (t, "probed now")
            }
            // Refused (credentials that may read but not write, a policy): plan for
            // the least any store does, which works on all, and probe again next time.
            Err(e) if e.class == crate::retry::Class::Fatal => {
                tracing::warn!(
                    "object store {storage_url}: the store probe was refused ({e}); planning for the least a store does (no manifest Etag, ranges or nesting)"
                );
                (StoreTraits::least(), "assumed: the probe was refused")
            }
            Err(e) => return Err(fail(e)),
        };
        Ok(StoreFound { traits, how })
    }

    /// HEADs `container`: true when it exists. A name the store refuses (HTTP 400:
    /// Ceph RGW applies S3's bucket rules to Swift containers) is bad input.
    async fn check_container_name(&self, container: &str) -> Result<bool> {
        match self.swift.container_exists(container).await {
            Ok(b) => Ok(b),
            Err(e) if e.status == Some(400) => Err(Error::input(format!(
                "the object store refuses the container name {container:?} (HTTP 400{}): Ceph RGW, for one, applies S3's bucket name rules to Swift containers: 3 to 255 bytes, not starting with `..`",
                e.trans_id.as_deref().map(|t| format!(", X-Trans-Id {t}")).unwrap_or_default()
            ))
            .hint("choose a container name of at least 3 bytes")),
            // Not ours to read (yet): the upload itself says so; a dry run goes on.
            Err(e) if e.status == Some(403) => Ok(false),
            Err(e) => Err(e.into_error(ErrorKind::Resumable)),
        }
    }
}
