//! Glance's `glance-direct` import, the fallback when `web-download` cannot be used
//! (Glance's URL filter refuses the TempURL, the store refuses the TempURL, or
//! Glance does not offer web-download): k5up stages the image data itself
//! (`PUT /v2/images/<id>/stage`), then asks for the import (`POST …/import`,
//! method `glance-direct`).
//!
//! The data comes from the local source, not from Swift through k5up: read from
//! the file it crosses the user's link once (up to Glance); streamed from Swift it
//! would cross it twice (down from Swift, then up to Glance). The file must be the
//! one uploaded (its identity is checked by the engine, and Glance's size and
//! SHA-512 are compared with the upload's digests once the image is active). It is
//! streamed in [`CHUNK`] blocks, a few ahead of the network, never held whole.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Ctx, Failure, IMAGE_SIZE, retry_hint};
use crate::model::ImportState;
use crate::source::CHUNK;
use crate::swift::SwiftError;

/// Blocks read ahead of the network (so a few MiB in memory, whatever the image).
const READ_AHEAD: usize = 4;

fn run_err(e: SwiftError) -> Failure {
    Failure::Run(e.into_error(crate::error::ErrorKind::Resumable))
}

/// Stages the source into image `id` and starts its `glance-direct` import; `why`
/// says why web-download is not used (journaled in the import's message, so
/// `status --json` shows it, and printed).
pub(crate) async fn stage_and_import(
    ctx: &Ctx<'_>,
    base: &str,
    id: &str,
    state: &mut ImportState,
    why: &str,
) -> Result<(), Failure> {
    let size = ctx.job.plan.file_size;
    let file = ctx.source.as_ref().map_err(|changed| {
        Failure::Service(
            format!("{why}; glance-direct, the fallback, needs the source file, which cannot be used: {changed}"),
            retry_hint(&ctx.job.id),
        )
    })?;
    tracing::info!(
        "job {}: web-download cannot be used ({why}): staging {} ({size} bytes) into Glance image {id} from the local file instead (glance-direct: the image crosses this link once more)",
        ctx.job.id,
        ctx.job.file
    );
    state.status = "staging".into();
    state.message = Some(format!("glance-direct (staged by k5up from the local file): {why}"));
    ctx.save(state)?;
    let op = format!("PUT Glance image {id} stage ({size} bytes of {})", ctx.job.file);
    let url = format!("{base}/v2/images/{id}/stage");
    let r = ctx
        .swift
        .session()
        .send_url_retrying(&op, Method::PUT, &url, |r| {
            r.header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(IMAGE_SIZE, size)
                .body(file_body(file.clone(), size))
        })
        .await;
    match r {
        Ok(_) => {}
        // Staged already (a retry whose first answer was lost): the size says whether whole.
        Err(e) if e.status == Some(409) => {}
        Err(e) if matches!(e.status, Some(400 | 403 | 413 | 415)) => {
            return Err(Failure::Service(
                format!("Glance refused the staged upload (glance-direct), after {why}: {e}"),
                format!(
                    "the Glance operator must enable glance-direct (enabled_import_methods) or allow the web-download; the quota or image_size_cap may be too small for {size} bytes; then `k5up import {}`",
                    ctx.job.id
                ),
            ));
        }
        Err(e) => return Err(run_err(e)),
    }
    state.status = "staged".into();
    ctx.save(state)?;
    import_staged(ctx, base, id, state).await
}

/// After the stage: checks that Glance holds all of it, then asks for the import.
pub(crate) async fn import_staged(ctx: &Ctx<'_>, base: &str, id: &str, state: &mut ImportState) -> Result<(), Failure> {
    let size = ctx.job.plan.file_size;
    let img: Option<Value> = ctx
        .swift
        .session()
        .get_json(&format!("GET Glance image {id}"), &format!("{base}/v2/images/{id}"))
        .await
        .map_err(run_err)?;
    let staged = img.as_ref().and_then(|v| v["size"].as_u64());
    if staged != Some(size) {
        return Err(Failure::Service(
            format!(
                "Glance holds {} of the {size} bytes staged for image {id} (glance-direct was cut short)",
                staged.map(|s| s.to_string()).unwrap_or_else(|| "none".into())
            ),
            format!(
                "delete image {id} (`openstack image delete {id}`), then `k5up import {}` (a queued image is staged again)",
                ctx.job.id
            ),
        ));
    }
    let op = format!("POST Glance image {id} import (glance-direct)");
    let body = json!({"method": {"name": "glance-direct"}});
    state.status = "requested".into();
    ctx.save(state)?;
    match ctx
        .swift
        .session()
        .send_url_retrying(&op, Method::POST, &format!("{base}/v2/images/{id}/import"), |r| {
            r.header("Accept", "application/json").header(IMAGE_SIZE, size).json(&body)
        })
        .await
    {
        Ok(_) | Err(SwiftError { status: Some(409), .. }) => {
            tracing::info!("job {}: Glance is importing image {id} from the staged data (glance-direct)", ctx.job.id);
            Ok(())
        }
        Err(e) if matches!(e.status, Some(400 | 403 | 415)) => {
            Err(Failure::Service(format!("Glance refused the glance-direct import: {e}"), retry_hint(&ctx.job.id)))
        }
        Err(e) => Err(run_err(e)),
    }
}

/// A streamed body of the first `len` bytes of `file`.
fn file_body(file: Arc<File>, len: u64) -> reqwest::Body {
    reqwest::Body::wrap_stream(file_stream(file, len))
}

/// The first `len` bytes of `file` in [`CHUNK`] blocks, read by a blocking reader
/// [`READ_AHEAD`] blocks ahead of the consumer; a read error ends the stream.
fn file_stream(file: Arc<File>, len: u64) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut off = 0u64;
        while off < len {
            let n = CHUNK.min((len - off) as usize);
            let mut buf = vec![0u8; n];
            let r = file.read_exact_at(&mut buf, off).map(|_| Bytes::from(buf));
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                return;
            }
            off += n as u64;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// The body is the file's bytes, in blocks of at most CHUNK, and stops at `len`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_body_streams_the_file_in_blocks() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(2 * CHUNK + 77)).map(|i| (i % 251) as u8).collect();
        std::io::Write::write_all(&mut f, &data).unwrap();
        std::io::Write::write_all(&mut f, b"past the end").unwrap();
        let s = file_stream(Arc::new(f), data.len() as u64);
        let mut s = std::pin::pin!(s);
        let mut got = vec![];
        let mut blocks = 0;
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            assert!(b.len() <= CHUNK);
            got.extend_from_slice(&b);
            blocks += 1;
        }
        assert_eq!(blocks, 3);
        assert!(got == data, "the file's bytes, and no more");
    }
}
