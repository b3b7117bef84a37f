//! Sharing an imported image with other projects (Glance image members, API v2).
//!
//! As the owner: make the image `shared` when it is `private` (JSON-patch), add
//! each project as a member (409: it is one already), then read every member's
//! status back (`pending` until that project accepts). As a member: `accept`.
//! Every step is idempotent on the server, so a run killed anywhere continues from
//! the journaled [`ShareState`] without adding anything twice.

use reqwest::Method;
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::model::ShareState;
use crate::swift::session::read_json;
use crate::swift::{Swift, SwiftError};

/// Glance's JSON-patch media type for image updates.
const PATCH_TYPE: &str = "application/openstack-images-v2.1-json-patch";

/// What a sharing run needs.
pub(crate) struct Ctx<'a> {
    /// The token (the owner project's).
    pub swift: &'a Swift,
    /// Glance's base URL (without `/v2`).
    pub glance: String,
    /// The job, for messages.
    pub job_id: &'a str,
    /// Makes a new state durable (the caller journals it) before the step goes on.
    pub on_state: &'a (dyn Fn(&ShareState) -> Result<()> + Sync),
}

fn resumable(e: SwiftError) -> Error {
    e.into_error(ErrorKind::Resumable)
}

async fn json_of(op: &str, resp: reqwest::Response) -> Result<Value> {
    read_json(op, resp).await.map_err(resumable)
}

/// Runs (or continues) the sharing of `state.image_id`. Returns the final state.
pub(crate) async fn run(ctx: &Ctx<'_>, mut state: ShareState) -> Result<ShareState> {
    let id = state.image_id.clone().ok_or_else(|| Error::failed("the sharing step has no image id"))?;
    let job = ctx.job_id;
    let http = ctx.swift.session();
    let image_url = format!("{}/v2/images/{id}", ctx.glance);
    let op = format!("GET Glance image {id} (before sharing it)");
    let Some(image) = http.get_json(&op, &image_url).await.map_err(resumable)? else {
        return Err(Error::failed(format!("job {job}: image {id} is not in Glance at {}", ctx.glance)).hint(
            "was it deleted after the import (`openstack image show ID`)? With a K5 import, the image is in the region's Glance: give it with --glance-url",
        ));
    };
    let owner = image["owner"].as_str().unwrap_or_default().to_string();
    let scope = ctx.swift.auth().scope().await.map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
    // Glance's own words for a refusal say little of who is who: add it.
    let whose = if owner.is_empty() || owner == scope.project_id {
        String::new()
    } else {
        format!(
            " (the image belongs to project {owner}; these credentials are project {} ({}))",
            scope.project_name, scope.project_id
        )
    };
    let status = image["status"].as_str().unwrap_or_default();
    if status != "active" {
        return Err(Error::failed(format!(
            "job {job}: image {id} is `{status}` in Glance, not active: it is not shared"
        ))
        .hint(format!("`k5up import {job}` finishes the import, then shares it")));
    }
    let mut visibility = image["visibility"].as_str().unwrap_or("private").to_string();
    if visibility == "private" {
        let op = format!("PATCH Glance image {id} (visibility private → shared)");
        let body = json!([{"op": "replace", "path": "/visibility", "value": "shared"}]);
        let patch = |r: reqwest::RequestBuilder| {
            r.header("Accept", "application/json").header("Content-Type", PATCH_TYPE).body(body.to_string())
        };
        match http.send_url_retrying(&op, Method::PATCH, &image_url, patch).await {
            Ok(_) => visibility = "shared".into(),
            Err(e) if e.status == Some(403) => {
                return Err(refused(job, &e, &whose)
                    .hint("only the image's owner may change its visibility; check your role in the project"));
            }
            Err(e) => return Err(resumable(e)),
        }
        tracing::info!("job {job}: image {id} is now `shared` (it was private)");
    }
    state.visibility = Some(visibility.clone());
    (ctx.on_state)(&state)?;
    if visibility == "public" || visibility == "community" {
        tracing::warn!(
            "job {job}: image {id} is {visibility}: every project can see it already, and Glance gives such images no members"
        );
        state.done = true;
        state.message = None;
        (ctx.on_state)(&state)?;
        return Ok(state);
    }
    let members_url = format!("{image_url}/members");
    for t in state.targets.clone() {
        if state.status_of(&t.id).is_some() {
            continue; // added by an earlier run
        }
        // A member already (an earlier share, or an answer lost to a kill)? Asked
        // first: at the member quota Glance answers a repeated POST with 413, not 409.
        if let Some(status) = member_status(ctx, &id, &t.id).await? {
            tracing::info!("job {job}: image {id} is shared with project {} already: {status}", t.describe());
            state.set_status(&t.id, &status);
            (ctx.on_state)(&state)?;
            continue;
        }
        let op = format!("POST Glance image {id} member {}", t.describe());
        let body = json!({"member": t.id});
        let r = http
            .send_url_retrying(&op, Method::POST, &members_url, |r| r.header("Accept", "application/json").json(&body))
            .await;
        // A retry of a request whose answer was lost meets the member it added:
        // Glance says 409, or 413 when that member filled the quota.
        let already = match &r {
            Err(e) if e.status == Some(409) || e.status == Some(413) => member_status(ctx, &id, &t.id).await?,
            _ => None,
        };
        let status = match r {
            _ if already.is_some() => already.unwrap_or_default(),
            Ok(resp) => json_of(&op, resp).await?["status"].as_str().unwrap_or("pending").to_string(),
            Err(e) if e.status == Some(409) => {
                return Err(Error::failed(format!(
                    "job {job}: Glance says project {} is a member of image {id} (409), yet does not list it",
                    t.describe()
                ))
                .hint(format!("run `k5up share {job} --with {}` again", t.id)));
            }
            // A refusal is final for this project: it leaves the request (the error
            // says so), and the other projects stay to be shared by a later run.
            Err(e) if e.status == Some(413) => {
                state.targets.retain(|x| x.id != t.id);
                (ctx.on_state)(&state)?;
                return Err(refused(job, &e, &whose).hint(
                    "Glance's image_member_quota is reached for this image: remove members it no longer needs, or ask the Glance administrator to raise the quota",
                ));
            }
            Err(e) if e.status == Some(403) => {
                state.targets.retain(|x| x.id != t.id);
                (ctx.on_state)(&state)?;
                return Err(refused(job, &e, &whose)
                    .hint("only the project that owns the image may add members: use its credentials"));
            }
            Err(e) => return Err(resumable(e)),
        };
        tracing::info!("job {job}: image {id} is shared with project {}: {status}", t.describe());
        state.set_status(&t.id, &status);
        (ctx.on_state)(&state)?;
    }
    // Every member's status as Glance holds it now (another project may have accepted).
    let op = format!("GET Glance image {id} members");
    let list = http.get_json(&op, &members_url).await.map_err(resumable)?.ok_or_else(|| {
        Error::failed(format!("job {job}: image {id} disappeared from Glance while it was being shared"))
    })?;
    for m in list["members"].as_array().into_iter().flatten() {
        if let (Some(p), Some(s)) = (m["member_id"].as_str(), m["status"].as_str())
            && state.targets.iter().any(|t| t.id == p)
        {
            state.set_status(p, s);
        }
    }
    if let Some(t) = state.targets.iter().find(|t| state.status_of(&t.id).is_none()) {
        return Err(Error::failed(format!(
            "job {job}: project {} is not in the member list of image {id} that Glance returned",
            t.describe()
        ))
        .hint(format!("was it removed meanwhile? `k5up share {job} --with {}` adds it again", t.id)));
    }
    state.done = true;
    state.message = None;
    (ctx.on_state)(&state)?;
    Ok(state)
}

/// The member status of `project` for image `id`; `None` when it is not a member.
async fn member_status(ctx: &Ctx<'_>, id: &str, project: &str) -> Result<Option<String>> {
    let url = format!("{}/v2/images/{id}/members/{}", ctx.glance, crate::swift::enc_container(project));
    let op = format!("GET Glance image {id} member {project}");
    let member = ctx.swift.session().get_json(&op, &url).await.map_err(resumable)?;
    Ok(member.map(|m| m["status"].as_str().unwrap_or("pending").to_string()))
}

/// Glance refused a step: the request (it names the image and the project), Glance's
/// own words and request id, and whose image it is.
fn refused(job: &str, e: &SwiftError, whose: &str) -> Error {
    Error::failed(format!("job {job}: Glance refused: {e}{whose}"))
}

/// `k5up accept IMAGE_ID`: as a member project, accepts an image shared with it
/// (`PUT /v2/images/<id>/members/<project>`), so it appears in the project's image
/// list. Returns the member record's status.
pub(crate) async fn accept(swift: &Swift, glance: &str, id: &str) -> Result<String> {
    let scope =
        swift.auth().scope().await.map_err(|e| Error::input(format!("cannot accept an image: {e}")).caused_by(e))?;
    let who = format!("{} ({})", scope.project_name, scope.project_id);
    let url = format!("{glance}/v2/images/{}/members/{}", crate::swift::enc_container(id), scope.project_id);
    let op = format!("PUT Glance image {id} member {who} (accept)");
    let body = json!({"status": "accepted"});
    match swift
        .session()
        .send_url_retrying(&op, Method::PUT, &url, |r| r.header("Accept", "application/json").json(&body))
        .await
    {
        Ok(r) => Ok(json_of(&op, r).await?["status"].as_str().unwrap_or("accepted").to_string()),
        Err(e) if e.status == Some(404) => Err(Error::input(format!(
            "image {id} is not shared with project {who}, or does not exist: Glance says {}",
            e.detail
        ))
        .hint("its owner shares it first (`k5up share JOB --with PROJECT`); check the image id and these credentials' project")),
        Err(e) if e.status == Some(403) => Err(Error::input(format!(
            "Glance refused to let project {who} accept image {id}: HTTP 403: {}",
            e.detail
        ))
        .hint("accept with the credentials of the project the image was shared with, not the owner's")),
        Err(e) => Err(e.into_error(ErrorKind::Resumable)),
    }
}
