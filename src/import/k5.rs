//! Fujitsu K5 vmimport: `POST <vmimport>/v1/imageimport`, then poll
//! `GET <vmimport>/v1/imageimport/<import_id>/status` until `succeeded`, `failed`
//! or `canceled`.
//!
//! Also the K5 profile (`--k5-region`, `--k5-contract`), which derives the identity,
//! object-storage and vmimport endpoints of a region the way K5's own sample
//! scripts (`k5contractsettings.py`) did.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Ctx, Failure, ImportSpec, next_poll};
use crate::digest::Algo;
use crate::error::{Error, ErrorKind, Result};
use crate::model::ImportState;
use crate::retry;
use crate::swift::SwiftError;
use crate::swift::auth::{KeystoneMethod, NameOrId};

/// The `os_type` values vmimport accepts.
pub(crate) const OS_TYPES: [&str; 10] = [
    "win2008R2SE",
    "win2008R2EE",
    "win2012SE",
    "win2012R2SE",
    "win2016SE_ja",
    "win2016SE_en",
    "rhel6",
    "rhel7",
    "centos",
    "ubuntu",
];

/// The endpoints of a K5 region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    /// Keystone v3.
    pub auth_url: String,
    /// Object storage, with `$(project_id)s` for the token's project.
    pub storage_url: String,
    /// vmimport.
    pub vmimport_url: String,
}

/// The endpoints of K5 region `region` (`uk-1`, `fi-1`, `jp-east-1`, ...).
pub(crate) fn profile(region: &str) -> Result<Profile> {
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(
            Error::input(format!("`{region}` is not a K5 region name")).hint("for example uk-1, fi-1, de-1, jp-east-1")
        );
    }
    let host = |svc: &str| format!("https://{svc}.{region}.cloud.global.fujitsu.com");
    Ok(Profile {
        auth_url: format!("{}/v3", host("identity")),
        storage_url: format!("{}/v1/AUTH_$(project_id)s", host("objectstorage")),
        vmimport_url: host("vmimport"),
    })
}

/// Fills the credential variables a K5 profile implies, where `env` (the process
/// environment) leaves them out: the identity and object-storage endpoints of
/// `region`, and the contract as the user's and project's domain.
pub(crate) fn apply_profile(
    env: &mut std::collections::HashMap<String, String>,
    region: &str,
    contract: Option<&str>,
) -> Result<()> {
    let p = profile(region)?;
    let mut default = |k: &str, v: String| {
        env.entry(k.to_string()).or_insert(v);
    };
    default("OS_AUTH_URL", p.auth_url);
    default("OS_STORAGE_URL", p.storage_url);
    default("OS_REGION_NAME", region.to_string());
    if let Some(c) = contract {
        default("OS_USER_DOMAIN_NAME", c.to_string());
        default("OS_PROJECT_DOMAIN_NAME", c.to_string());
    }
    Ok(())
}

/// Checks a K5 import before anything is uploaded.
pub(crate) fn validate(spec: &ImportSpec, object: &str) -> Result<()> {
    if !object.ends_with(".vmdk") {
        return Err(Error::input(format!("K5 vmimport needs an object name ending in `.vmdk`; `{object}` does not"))
            .hint("name the object with --object NAME.vmdk"));
    }
    match spec.os_type.as_deref() {
        None => {
            return Err(Error::input("K5 vmimport needs --os-type").hint(format!("one of {}", OS_TYPES.join(", "))));
        }
        Some(t) if !OS_TYPES.contains(&t) => {
            return Err(Error::input(format!("K5 vmimport does not accept os_type `{t}`"))
                .hint(format!("one of {}", OS_TYPES.join(", "))));
        }
        Some(_) => {}
    }
    if spec.disk_format != "vmdk" {
        return Err(Error::input(format!(
            "K5 vmimport imports VMDK images; this file looks like {}",
            spec.disk_format
        ))
        .hint("convert it first (`qemu-img convert -O vmdk -o subformat=streamOptimized`), or pass --disk-format vmdk if the detection is wrong"));
    }
    let Some(url) = &spec.endpoint else {
        return Err(Error::input("no vmimport endpoint").hint("use --k5-region REGION, or --vmimport-url URL"));
    };
    if spec.k5_conversion
        && !url.starts_with("https://")
        && !(spec.allow_http_password && crate::swift::url::is_loopback(url))
    {
        return Err(Error::input(format!("refusing to send your password to {url}: it is not https"))
            .hint("use an https vmimport URL (a plain-http loopback test endpoint needs --allow-http-password)"));
    }
    Ok(())
}

fn run_err(e: SwiftError) -> Failure {
    Failure::Run(e.into_error(ErrorKind::Resumable))
}

/// The message of a vmimport error or failed status body.
fn service_message(v: &Value) -> String {
    for p in ["/error/message", "/message", "/error_message", "/detail", "/error_code"] {
        if let Some(m) = v.pointer(p).and_then(Value::as_str).filter(|m| !m.is_empty()) {
            return m.to_string();
        }
    }
    "(no message)".into()
}

/// Runs or continues the K5 import of `state.image_id`.
pub(crate) async fn run(ctx: &Ctx<'_>, state: &mut ImportState) -> std::result::Result<(), Failure> {
    let base = ctx.spec.endpoint.clone().ok_or_else(|| {
        Failure::Run(Error::input("no vmimport endpoint").hint("use --k5-region REGION, or --vmimport-url URL"))
    })?;
    let base = base.trim_end_matches('/').to_string();
    let job = ctx.job.id.clone();
    if state.import_id.is_none() {
        state.import_id = Some(request(ctx, &base, state).await?);
        state.status = "queued".into();
        ctx.save(state)?;
    }
    let import_id = state.import_id.clone().unwrap_or_default();
    let url = format!("{base}/v1/imageimport/{import_id}/status");
    let mut wait = ctx.poll;
    loop {
        let op = format!("GET vmimport status of import {import_id}");
        let resp = ctx
            .swift
            .session()
            .send_url_retrying(&op, Method::GET, &url, |r| r.header("Accept", "application/json"))
            .await
            .map_err(|e| {
                if e.status == Some(404) {
                    Failure::Service(
                        format!("vmimport no longer knows import {import_id}"),
                        format!("`k5up import {job}` starts a new one"),
                    )
                } else {
                    run_err(e)
                }
            })?;
        let v: Value = resp.json().await.map_err(|e| run_err(SwiftError::transport(&op, &e)))?;
        let status = v["import_status"].as_str().unwrap_or("").to_string();
        let progress = v["progress"].as_u64().map(|p| p.min(100) as u8);
        if status != state.status || progress != state.progress {
            state.status = status.clone();
            state.progress = progress;
            ctx.save(state)?;
            tracing::info!("job {job}: vmimport {import_id}: {status} {}%", progress.unwrap_or(0));
        }
        match status.as_str() {
            "succeeded" => {
                tracing::info!("job {job}: K5 image {} registered (import {import_id})", state.image_id);
                return Ok(());
            }
            "failed" | "canceled" => {
                return Err(Failure::Service(
                    format!("vmimport {import_id} {status}: {}", service_message(&v)),
                    format!("fix the cause, then `k5up import {job}` starts a new import (the object stays in Swift)"),
                ));
            }
            _ => {}
        }
        tokio::time::sleep(wait).await;
        wait = next_poll(wait);
    }
}

/// The request body (the password only when the region needs it).
fn body(ctx: &Ctx<'_>, state: &ImportState) -> std::result::Result<Value, Failure> {
    let spec = ctx.spec;
    let mut b = json!({
        "name": spec.image_name,
        "location": ctx.object_path()?,
        "id": state.image_id,
        "os_type": spec.os_type,
        "checksum": ctx.digest(Algo::Sha1)?,
    });
    if let Some(r) = spec.min_ram {
        b["min_ram"] = json!(r);
    }
    if let Some(d) = spec.min_disk {
        b["min_disk"] = json!(d);
    }
    if spec.k5_conversion {
        let k = ctx.swift.auth().keystone();
        let Some(KeystoneMethod::Password { user, password, .. }) = k.map(|k| &k.method) else {
            return Err(Failure::Run(
                Error::input("--k5-conversion sends your user name and password: it needs password credentials")
                    .hint("set OS_USERNAME / OS_PASSWORD / OS_USER_DOMAIN_NAME (the contract)"),
            ));
        };
        let (name, domain) = match user {
            NameOrId::Name { name, domain: Some(d) } => (name.clone(), d.as_name()),
            NameOrId::Name { name, domain: None } => (name.clone(), None),
            NameOrId::Id(_) => (String::new(), None),
        };
        let Some(domain) = domain.filter(|_| !name.is_empty()) else {
            return Err(Failure::Run(
                Error::input("--k5-conversion needs the user's name and domain (contract) name")
                    .hint("set OS_USERNAME and OS_USER_DOMAIN_NAME (or --k5-contract)"),
            ));
        };
        use base64::Engine as _;
        b["conversion"] = json!(true);
        b["user_name"] = json!(name);
        b["password"] = json!(base64::engine::general_purpose::STANDARD.encode(password.expose()));
        b["domain_name"] = json!(domain);
    }
    Ok(b)
}

/// Sends the import request, once: a retry after a lost answer first looks for an
/// import of this image id among the existing ones.
async fn request(ctx: &Ctx<'_>, base: &str, state: &ImportState) -> std::result::Result<String, Failure> {
    let b = body(ctx, state)?;
    let url = format!("{base}/v1/imageimport");
    let op = format!("POST vmimport (image {}, {}/{})", state.image_id, ctx.job.container, ctx.job.object);
    let r = retry::retry(ctx.swift.policy(), &op, |attempt| {
        let b = &b;
        let url = &url;
        let op = &op;
        async move {
            if let Some(found) = find(ctx, base, &state.image_id).await? {
                if attempt > 1 || state.status != "new" {
                    tracing::info!(
                        "job {}: vmimport already has import {found} of image {}: following it",
                        ctx.job.id,
                        state.image_id
                    );
                }
                return Ok(found);
            }
            let resp = ctx
                .swift
                .session()
                .send_url(op, Method::POST, url, |r| r.header("Accept", "application/json").json(b))
                .await?;
            let v: Value = resp.json().await.map_err(|e| SwiftError::transport(op, &e))?;
            v["import_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| SwiftError::local(op, "the answer has no import_id", retry::Class::Fatal))
        }
    })
    .await;
    match r {
        Ok(id) => {
            tracing::info!("job {}: vmimport accepted image {} as import {id}", ctx.job.id, state.image_id);
            Ok(id)
        }
        Err(e) if matches!(e.status, Some(400) | Some(404) | Some(409)) => Err(Failure::Service(
            format!("vmimport refused the request (HTTP {}): {}", e.status.unwrap_or(0), e.detail),
            format!("fix the cause, then `k5up import {}`", ctx.job.id),
        )),
        Err(e) => Err(run_err(e)),
    }
}

/// The import of `image_id` among the newest 100, if any (the list gives import ids;
/// each one's status names its image).
async fn find(ctx: &Ctx<'_>, base: &str, image_id: &str) -> std::result::Result<Option<String>, SwiftError> {
    let op = "GET vmimport list";
    let resp = ctx
        .swift
        .session()
        .send_url(op, Method::GET, &format!("{base}/v1/imageimport?start=0&limit=100"), |r| {
            r.header("Accept", "application/json")
        })
        .await?;
    let v: Value = resp.json().await.map_err(|e| SwiftError::transport(op, &e))?;
    for imp in v["imports"].as_array().into_iter().flatten() {
        let Some(iid) = imp["import_id"].as_str() else { continue };
        let op = format!("GET vmimport status of import {iid}");
        let st = ctx
            .swift
            .session()
            .send_url(&op, Method::GET, &format!("{base}/v1/imageimport/{iid}/status"), |r| {
                r.header("Accept", "application/json")
            })
            .await?;
        let s: Value = st.json().await.map_err(|e| SwiftError::transport(&op, &e))?;
        if s["id"].as_str() == Some(image_id) {
            return Ok(Some(iid.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::ImportKind;

    fn spec() -> ImportSpec {
        ImportSpec {
            kind: ImportKind::K5,
            image_name: "img".into(),
            os_type: Some("ubuntu".into()),
            disk_format: "vmdk".into(),
            min_ram: None,
            min_disk: None,
            endpoint: Some("https://vmimport.uk-1.cloud.global.fujitsu.com".into()),
            k5_conversion: false,
            allow_http_password: false,
        }
    }

    #[test]
    fn refused_before_upload() {
        assert!(validate(&spec(), "disk.vmdk").is_ok());
        let e = validate(&spec(), "disk.qcow2").unwrap_err();
        assert!(e.msg.contains(".vmdk"), "{}", e.msg);
        let e = validate(&ImportSpec { os_type: Some("windows11".into()), ..spec() }, "d.vmdk").unwrap_err();
        assert!(e.msg.contains("windows11") && e.hint.unwrap().contains("rhel7"));
        assert!(validate(&ImportSpec { os_type: None, ..spec() }, "d.vmdk").is_err());
        assert!(validate(&ImportSpec { disk_format: "raw".into(), ..spec() }, "d.vmdk").is_err());
        let http = ImportSpec { endpoint: Some("http://127.0.0.1:9393".into()), k5_conversion: true, ..spec() };
        assert!(validate(&http, "d.vmdk").unwrap_err().msg.contains("password"));
        assert!(validate(&ImportSpec { allow_http_password: true, ..http.clone() }, "d.vmdk").is_ok());
        let remote =
            ImportSpec { endpoint: Some("http://vmimport.example.com".into()), allow_http_password: true, ..http };
        assert!(validate(&remote, "d.vmdk").is_err(), "the loopback exception is only for loopback");
    }

    #[test]
    fn region_profile() {
        let p = profile("uk-1").unwrap();
        assert_eq!(p.auth_url, "https://identity.uk-1.cloud.global.fujitsu.com/v3");
        assert_eq!(p.storage_url, "https://objectstorage.uk-1.cloud.global.fujitsu.com/v1/AUTH_$(project_id)s");
        assert_eq!(p.vmimport_url, "https://vmimport.uk-1.cloud.global.fujitsu.com");
        assert!(profile("uk-1.evil.com/").is_err());
    }
}
