//! OpenStack Glance (image API v2, interoperable import by `web-download`).
//!
//! create the image (client-chosen id) → `POST /v2/images/<id>/import` with a TempURL
//! of the object, so Glance fetches it from Swift and the image crosses the user's
//! link only once → poll until `active` → compare `size` and `os_hash_value` (and
//! `checksum` when MD5 was asked for) with the digests computed while uploading.

use reqwest::Method;
use serde_json::{Value, json};

use super::tempurl::{self, Reach, TempUrl};
use super::{Ctx, Failure, IMAGE_SIZE, direct, next_poll, retry_hint};
use crate::digest::Algo;
use crate::error::{Error, ErrorKind};
use crate::model::ImportState;
use crate::swift::session::read_json;
use crate::swift::{SwiftError, TempUrlDigest};

/// Disk formats Glance knows besides those k5up detects.
pub(crate) const OTHER_FORMATS: [&str; 5] = ["ami", "ari", "aki", "vdi", "ploop"];

fn run_err(e: SwiftError) -> Failure {
    Failure::Run(e.into_error(ErrorKind::Resumable))
}

async fn endpoint(ctx: &Ctx<'_>) -> Result<String, Failure> {
    endpoint_of(ctx.swift, ctx.spec).await.map_err(Failure::Run)
}

/// Glance's base URL (without `/v2`): `--glance-url`, or the catalog's `image` service.
pub(crate) async fn endpoint_of(
    swift: &crate::swift::Swift,
    spec: &crate::import::ImportSpec,
) -> Result<String, Error> {
    base_url(swift, spec.endpoint.as_deref()).await
}

/// Glance's base URL (without `/v2`): `explicit`, or the catalog's `image` service.
/// Swift v1 credentials are refused first: Glance takes Keystone tokens only, so no
/// URL can help them.
pub(crate) async fn base_url(swift: &crate::swift::Swift, explicit: Option<&str>) -> Result<String, Error> {
    if matches!(swift.auth().credentials(), crate::swift::Credentials::V1 { .. }) {
        return Err(needs_keystone());
    }
    let url = match explicit {
        Some(u) => u.to_string(),
        None => swift.auth().service_url("image").await.map_err(|e| {
            Error::input(format!("cannot find Glance: {e}")).caused_by(e).hint("give its URL with --glance-url")
        })?,
    };
    let u = url.trim_end_matches('/');
    Ok(u.strip_suffix("/v2").unwrap_or(u).to_string())
}

/// Glance with Swift v1 (tempauth) credentials: the remedy is Keystone credentials,
/// not another Glance URL.
pub(crate) fn needs_keystone() -> Error {
    Error::input(
        "Glance needs Keystone credentials: these are Swift v1 (tempauth) credentials (ST_AUTH), whose tokens Glance does not accept",
    )
    .hint(
        "log in with Keystone: source an OpenStack RC file (OS_AUTH_URL=https://KEYSTONE:5000/v3, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME; or OS_APPLICATION_CREDENTIAL_ID and _SECRET), or set OS_CLOUD: they take precedence over ST_AUTH (--glance-url does not help)",
    )
}

async fn get_json(ctx: &Ctx<'_>, op: &str, url: &str) -> Result<Option<Value>, Failure> {
    ctx.swift.session().get_json(op, url).await.map_err(run_err)
}

/// Runs or continues the Glance import of `state.image_id`.
pub(crate) async fn run(ctx: &Ctx<'_>, state: &mut ImportState) -> Result<(), Failure> {
    let base = endpoint(ctx).await?;
    let id = state.image_id.clone();
    let image_url = format!("{base}/v2/images/{id}");
    let job = &ctx.job.id;

    let found = get_json(ctx, &format!("GET Glance image {id}"), &image_url).await?;
    let requested = matches!(state.status.as_str(), "requested" | "importing");
    let start = match &found {
        None => true,
        Some(img) => img["status"].as_str() == Some("queued") && !(requested && failed_import(img)),
    };
    // The URL Glance will read is made and checked before Glance is asked anything.
    let route = if start { Some(route(ctx).await?) } else { None };
    let image = match found {
        Some(v) => v,
        None => create(ctx, &base, &id).await?,
    };
    let mut status = image["status"].as_str().unwrap_or("").to_string();
    match route {
        Some(Route::Web(uri)) => {
            if let Some(why) = start_import(ctx, &base, &id, state, &uri).await? {
                direct::stage_and_import(ctx, &base, &id, state, &why).await?;
            }
        }
        Some(Route::Direct(why)) => direct::stage_and_import(ctx, &base, &id, state, &why).await?,
        // Staged by a run that stopped before the import was asked for.
        None if status == "uploading" && state.status == "staged" => {
            direct::import_staged(ctx, &base, &id, state).await?
        }
        None if status == "uploading" && state.status == "staging" => {
            tracing::info!("job {job}: Glance image {id} was being staged: checking what it holds");
            direct::import_staged(ctx, &base, &id, state).await?
        }
        None if status != "active" => {
            tracing::info!("job {job}: Glance image {id} is {status}: following the import already started")
        }
        None => {}
    }

    let mut wait = ctx.poll;
    loop {
        let img = get_json(ctx, &format!("GET Glance image {id}"), &image_url)
            .await?
            .ok_or_else(|| Failure::Service(format!("image {id} disappeared from Glance"), retry_hint(job)))?;
        status = img["status"].as_str().unwrap_or("").to_string();
        if status != state.status && !(status == "queued" && state.status == "requested") {
            state.status = status.clone();
            ctx.save(state)?;
            tracing::info!("job {job}: Glance image {id}: {status}");
        }
        match status.as_str() {
            "active" => return verify(ctx, &img),
            "queued" if failed_import(&img) => {
                let msg = task_message(ctx, &base, &id).await;
                return Err(Failure::Service(
                    format!(
                        "Glance could not import the object (os_glance_failed_import={}): {msg}",
                        img["os_glance_failed_import"].as_str().unwrap_or("")
                    ),
                    retry_hint(job),
                ));
            }
            "killed" | "deleted" | "pending_delete" | "deactivated" => {
                return Err(Failure::Service(format!("the image went to status `{status}`"), retry_hint(job)));
            }
            _ => {}
        }
        tokio::time::sleep(wait).await;
        wait = next_poll(wait);
    }
}

fn failed_import(img: &Value) -> bool {
    img["os_glance_failed_import"].as_str().is_some_and(|s| !s.is_empty())
}

async fn create(ctx: &Ctx<'_>, base: &str, id: &str) -> Result<Value, Failure> {
    let spec = ctx.spec;
    let mut body = json!({
        "id": id,
        "name": spec.image_name,
        "disk_format": spec.disk_format,
        "container_format": "bare",
        "k5up_job": ctx.job.id,
    });
    if let Some(r) = spec.min_ram {
        body["min_ram"] = json!(r);
    }
    if let Some(d) = spec.min_disk {
        body["min_disk"] = json!(d);
    }
    let op = format!("POST Glance image {id} (create `{}`)", spec.image_name);
    let url = format!("{base}/v2/images");
    let r = ctx
        .swift
        .session()
        .send_url_retrying(&op, Method::POST, &url, |r| r.header("Accept", "application/json").json(&body))
        .await;
    match r {
        Ok(resp) => read_json(&op, resp).await.map_err(run_err),
        // Created by a run that died before it saw the answer.
        Err(e) if e.status == Some(409) => get_json(ctx, &op, &format!("{url}/{id}")).await?.ok_or_else(|| {
            Failure::Service(format!("Glance refused image id {id}: {}", e.detail), retry_hint(&ctx.job.id))
        }),
        Err(e) if e.status == Some(400) || e.status == Some(403) => Err(Failure::Service(
            format!("Glance refused to create the image: {e}"),
            "check --disk-format, --min-ram, --min-disk and your role in the project".into(),
        )),
        Err(e) => Err(run_err(e)),
    }
}

/// How Glance gets the data.
enum Route {
    /// It downloads it from this TempURL (web-download).
    Web(TempUrl),
    /// k5up stages it (glance-direct), for this reason.
    Direct(String),
}

/// The TempURL Glance will download, signed with the store's digest and checked
/// with one GET of byte 0 without a token, before Glance is asked to create or
/// import anything: a URL the store refuses means glance-direct (with the reason,
/// and what to ask the store's operator in the log).
async fn route(ctx: &Ctx<'_>) -> Result<Route, Failure> {
    let (key, created) = tempurl::account_key(ctx.swift).await.map_err(run_err)?;
    if created {
        tracing::info!(
            "job {}: the account had no TempURL key: set one (Temp-URL-Key-2) for Glance's download",
            ctx.job.id
        );
    }
    let account = ctx.account_path()?;
    let origin = crate::swift::url::origin(&ctx.job.storage_url)
        .ok_or_else(|| Failure::Run(Error::failed(format!("the storage URL {} has no host", ctx.job.storage_url))))?;
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        + tempurl::LIFETIME_SECS;
    let caps = ctx.swift.capabilities().await.map_err(run_err)?;
    let digest = caps.tempurl_digest();
    tracing::debug!(
        "job {}: the TempURL for Glance is signed with HMAC-{} ({})",
        ctx.job.id,
        digest.label(),
        caps.tempurl_digest_reason()
    );
    let uri = tempurl::sign(digest, &origin, &account, &ctx.job.container, &ctx.job.object, &key, expires);
    let what = format!("{}/{}", ctx.job.container, ctx.job.object);
    match tempurl::check(ctx.swift.session().http(), &uri, &what).await {
        Reach::Works => Ok(Route::Web(uri)),
        Reach::Unknown(e) => {
            tracing::warn!("job {}: the TempURL could not be checked ({e}); Glance gets it anyway", ctx.job.id);
            Ok(Route::Web(uri))
        }
        Reach::Refused(e) => {
            tracing::warn!("job {}: {}", ctx.job.id, refused_hint(digest));
            Ok(Route::Direct(format!(
                "the object store refused the TempURL made for Glance, signed with HMAC-{} ({}): {e}",
                digest.label(),
                caps.tempurl_digest_reason()
            )))
        }
        Reach::Broken(e) => Ok(Route::Direct(format!("the TempURL made for Glance does not lead to the object: {e}"))),
    }
}

/// What to do when the store refuses a TempURL signed with `digest`.
fn refused_hint(digest: TempUrlDigest) -> String {
    format!(
        "the store does not accept HMAC-{d} TempURLs with the account's key, so Glance cannot download the object itself: ask the store's operator which digests its tempurl middleware allows (allowed_digests) and to list them in /info (k5up then signs with the strongest), or to allow {s}; check that nothing changed the account's Temp-URL-Key meanwhile",
        d = digest.label(),
        s = digest.as_str(),
    )
}

/// Asks Glance to download `uri` (web-download). `Some(why)` when Glance will not
/// download it but glance-direct may work: its URL filter refuses the TempURL (a
/// default Glance allows only ports 80 and 443), or it does not offer web-download.
async fn start_import(
    ctx: &Ctx<'_>,
    base: &str,
    id: &str,
    state: &mut ImportState,
    uri: &TempUrl,
) -> Result<Option<String>, Failure> {
    let origin = crate::swift::url::origin(&ctx.job.storage_url).unwrap_or_default();
    state.status = "requested".into();
    ctx.save(state)?;
    let op = format!("POST Glance image {id} import (web-download of {}/{})", ctx.job.container, ctx.job.object);
    let body = json!({"method": {"name": "web-download", "uri": uri.expose()}});
    let url = format!("{base}/v2/images/{id}/import");
    match ctx
        .swift
        .session()
        .send_url_retrying(&op, Method::POST, &url, |r| {
            r.header("Accept", "application/json").header(IMAGE_SIZE, ctx.job.plan.file_size).json(&body)
        })
        .await
    {
        Ok(_) => {
            tracing::info!("job {}: Glance is importing image {id} from Swift (web-download)", ctx.job.id);
            Ok(None)
        }
        // Another import of this image is running (a previous run's).
        Err(e) if e.status == Some(409) => Ok(None),
        Err(e) if e.status == Some(400) && web_download_refused(&e.detail) => {
            tracing::warn!(
                "job {}: for Glance to download from the store itself (the image then crosses this link once), {}; ask its operator (README: \"For the Glance administrator\")",
                ctx.job.id,
                allow_hint(&origin)
            );
            Ok(Some(format!("Glance refused the web-download (HTTP 400): {}", e.detail)))
        }
        Err(e) if e.status == Some(400) || e.status == Some(403) || e.status == Some(415) => Err(Failure::Service(
            format!("Glance refused the web-download (HTTP {}): {}", e.status.unwrap_or(0), e.detail),
            refusal_hint(&origin, &ctx.job.id),
        )),
        Err(e) => Err(run_err(e)),
    }
}

/// Glance's words when web-download is refused whatever the image: its URL filter
/// (`[import_filtering_opts]`), or the method not enabled (`enabled_import_methods`).
fn web_download_refused(detail: &str) -> bool {
    detail.contains("does not pass filtering") || detail.contains("Unknown import method name 'web-download'")
}

/// What the Glance administrator must allow for a web-download from `origin`
/// (`http://host:port`): a default Glance allows only ports 80 and 443.
fn allow_hint(origin: &str) -> String {
    let port = origin.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
    let ports = match port {
        Some(p) if p != 80 && p != 443 => format!(
            "; a default Glance allows only ports 80 and 443: `allowed_ports = [80,443,{p}]` in [import_filtering_opts] of glance-api.conf"
        ),
        _ => String::new(),
    };
    format!(
        "Glance must be allowed to download from {origin} ([import_filtering_opts] allowed_schemes/allowed_hosts/allowed_ports, and web-download in enabled_import_methods){ports}"
    )
}

/// [`allow_hint`], when the import stops there.
fn refusal_hint(origin: &str, job: &str) -> String {
    format!(
        "{}; ask its operator, then `k5up import {job}` (the object stays in Swift; README: \"For the Glance administrator\")",
        allow_hint(origin)
    )
}

async fn task_message(ctx: &Ctx<'_>, base: &str, id: &str) -> String {
    let url = format!("{base}/v2/images/{id}/tasks");
    let Ok(Some(v)) = get_json(ctx, "GET Glance image tasks", &url).await else {
        return "(Glance gave no task message)".into();
    };
    let mut tasks: Vec<&Value> = v["tasks"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    tasks.sort_by_key(|t| t["created_at"].as_str().unwrap_or("").to_string());
    tasks
        .iter()
        .rev()
        .find_map(|t| t["message"].as_str().filter(|m| !m.is_empty()))
        .map(crate::swift::error::server_message)
        .unwrap_or_else(|| "(Glance gave no task message)".into())
}

/// After `active`: size and hashes against the local digests.
fn verify(ctx: &Ctx<'_>, img: &Value) -> Result<(), Failure> {
    let id = img["id"].as_str().unwrap_or("");
    let mut bad = vec![];
    let size = img["size"].as_u64();
    if size != Some(ctx.job.plan.file_size) {
        bad.push(format!(
            "size: Glance {} ≠ local {}",
            size.map(|s| s.to_string()).unwrap_or("none".into()),
            ctx.job.plan.file_size
        ));
    }
    let algo = img["os_hash_algo"].as_str().unwrap_or("");
    let value = img["os_hash_value"].as_str().unwrap_or("");
    match algo.parse::<Algo>().ok().and_then(|a| ctx.digests.value(a).map(|v| (a, v))) {
        Some((a, local)) if !local.eq_ignore_ascii_case(value) => {
            bad.push(format!("os_hash_value ({a}): Glance {value} ≠ local {local}"))
        }
        Some(_) => {}
        None => tracing::warn!(
            "job {}: Glance hashes with `{algo}`, which k5up did not compute: only the size was compared",
            ctx.job.id
        ),
    }
    if let (Some(local), Some(remote)) = (ctx.digests.value(Algo::Md5), img["checksum"].as_str())
        && !local.eq_ignore_ascii_case(remote)
    {
        bad.push(format!("checksum (md5): Glance {remote} ≠ local {local}"));
    }
    if bad.is_empty() {
        tracing::info!("job {}: Glance image {id} is active; size and {algo} match the file", ctx.job.id);
        return Ok(());
    }
    Err(Failure::Service(
        format!("image {id} does not match the file: {}", bad.join("; ")),
        format!(
            "do not use image {id}; delete it, check the object with `k5up verify --deep {}`, then `k5up import {}`",
            ctx.job.id, ctx.job.id
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_leave_glance_direct() {
        let filtered =
            "URI for web-download does not pass filtering: http://localhost:8083/v1/AUTH_x/c%2Fo?temp_url_sig=…";
        assert!(web_download_refused(filtered));
        assert!(web_download_refused("Unknown import method name 'web-download'."));
        assert!(!web_download_refused("Unknown import method name 'glance-direct'."));
        assert!(!web_download_refused("Image needs to be in 'queued' state to use 'web-download' method"));
    }

    #[test]
    fn a_refused_port_is_named_with_the_line_that_allows_it() {
        let h = refusal_hint("http://swift.example:8080", "ab12");
        assert!(h.contains("allowed_ports = [80,443,8080]") && h.contains("k5up import ab12"), "{h}");
        let h = refusal_hint("https://swift.example", "ab12");
        assert!(!h.contains("allowed_ports = ["), "{h}");
        assert!(!refusal_hint("https://swift.example:443", "j").contains("allowed_ports = ["));
    }
}
