//! What the object store does: probed once per storage URL (kept in the journal's
//! `stores/`, and in each new job), and the container names it refuses, found
//! before anything is sent.

use std::time::Instant;

use super::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::swift::StoreTraits;

/// What the store does, as a new job's plan found it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreFound {
    /// Its traits.
    pub traits: StoreTraits,
    /// Probed by this run (else known from the journal).
    pub probed_now: bool,
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
            return Ok(StoreFound { traits, probed_now: false });
        }
        let started = Instant::now();
        let fail = |e: crate::swift::SwiftError| {
            e.into_error(ErrorKind::Resumable)
                .context("probing what the object store does (a few requests on tiny objects)")
        };
        if !seg_exists {
            self.swift.ensure_container(segment_container).await.map_err(fail)?;
        }
        let prefix = format!(".k5up-probe/{}/", crate::names::new_nonce()?);
        let probed = self.swift.probe_store(segment_container, &prefix).await;
        if !seg_exists && let Err(e) = self.swift.delete_container(segment_container).await {
            tracing::warn!("the container {segment_container} made for the store probe could not be deleted: {e}");
        }
        let traits = probed.map_err(fail)?;
        self.root.put_store_of(storage_url, &traits)?;
        tracing::info!(
            "object store {storage_url}: {} (probed in {} ms, kept in the journal)",
            traits.describe(),
            started.elapsed().as_millis()
        );
        Ok(StoreFound { traits, probed_now: true })
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
            Err(e) => Err(e.into_error(ErrorKind::Resumable)),
        }
    }
}
