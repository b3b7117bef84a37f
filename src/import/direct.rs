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
//! streamed in 1 MiB blocks, a few ahead of the network, never held whole.

use std::fs::File;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Ctx, Failure, IMAGE_SIZE, retry_hint};
use crate::model::ImportState;
use crate::swift::SwiftError;
use crate::upload::body::{Span, segment_body};

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

/// A streamed body of the first `len` bytes of `file`: the upload's segment body
/// (pooled 1 MiB blocks read a few ahead of the network, a read error ends it),
/// counted apart from the upload's progress.
fn file_body(file: Arc<File>, len: u64) -> reqwest::Body {
    let progress = Arc::new(crate::transfer::progress::Progress::default());
    segment_body(Span::whole(file, len), crate::transfer::meter::Meter::new(), progress, None)
}
