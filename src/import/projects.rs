//! Projects named by the user (`--share-with`), resolved to Keystone project ids
//! before anything is uploaded: an unknown project is refused now, not after a
//! 300 GB upload.
//!
//! A value is tried as a project id (`GET /v3/projects/<id>`), then as a name in the
//! share domain (`GET /v3/projects?name=&domain_id=`). Keystone's default policy
//! lets only administrators and domain readers do either for projects they are not
//! in, so a refusal (403) falls back to the caller's own projects
//! (`GET /v3/auth/projects`). A value none of these can check is accepted only when
//! it has the shape of a project id (32 hex digits), with a warning: Glance itself
//! does not check member ids.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::ShareTarget;
use crate::swift::Swift;

/// What one lookup in Keystone found.
enum Found {
    Yes(Value),
    No,
    /// Keystone refused the lookup (403): its words.
    Refused(String),
}

async fn get(swift: &Swift, op: &str, url: &str) -> Result<Found> {
    match swift.session().get_json(op, url).await {
        Ok(Some(v)) => Ok(Found::Yes(v)),
        Ok(None) => Ok(Found::No),
        Err(e) if e.status == Some(403) => Ok(Found::Refused(e.detail)),
        Err(e) => Err(Error::input(format!("cannot look up projects in Keystone: {e}"))),
    }
}

/// True for the shape of a Keystone project id (32 hex digits).
pub(crate) fn looks_like_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves every value of `--share-with` (ids or names; names within `domain`, by
/// default the user's own domain) to a project. Duplicates and the caller's own
/// project are refused: an image is always visible to its owner.
pub(crate) async fn resolve(swift: &Swift, wanted: &[String], domain: Option<&str>) -> Result<Vec<ShareTarget>> {
    let identity = swift.auth().identity_url().ok_or_else(|| {
        Error::input("--share-with needs Keystone credentials (an OpenStack RC file, OS_CLOUD or OS_AUTH_URL...)")
            .hint("images live in Glance, whose projects are Keystone's; ST_AUTH/tempauth credentials have none")
    })?;
    let scope = swift.auth().scope().await.map_err(|e| Error::input(format!("cannot share: {e}")).caused_by(e))?;
    let domain_id = match domain {
        None => scope.user_domain_id.clone(),
        Some(d) if d == scope.user_domain_id || d.eq_ignore_ascii_case(&scope.user_domain_name) => {
            scope.user_domain_id.clone()
        }
        Some(d) => domain_id_of(swift, &identity, d).await?,
    };
    let mut own: Option<Vec<Value>> = None;
    let mut out: Vec<ShareTarget> = vec![];
    for w in wanted {
        let w = w.trim();
        if w.is_empty() {
            return Err(
                Error::input("--share-with holds an empty project name").hint("--share-with P1,P2 (names or ids)")
            );
        }
        let t = resolve_one(swift, &identity, w, &domain_id, &mut own).await?;
        if t.id == scope.project_id {
            return Err(Error::input(format!(
                "project {} is the one these credentials upload to: it owns the image already",
                t.describe()
            ))
            .hint("--share-with names the other projects that should see the image"));
        }
        if !out.iter().any(|x| x.id == t.id) {
            out.push(t);
        }
    }
    Ok(out)
}

async fn resolve_one(
    swift: &Swift,
    identity: &str,
    w: &str,
    domain_id: &str,
    own: &mut Option<Vec<Value>>,
) -> Result<ShareTarget> {
    let enc = crate::swift::enc_container(w);
    let mut refusals = vec![];
    // As an id.
    match get(swift, &format!("GET Keystone project {w}"), &format!("{identity}/projects/{enc}")).await? {
        Found::Yes(v) if v["project"]["id"].as_str() == Some(w) && v["project"]["is_domain"] != Value::Bool(true) => {
            return Ok(ShareTarget { id: w.to_string(), name: None });
        }
        Found::Refused(m) => refusals.push(m),
        _ => {}
    }
    // As a name in the domain.
    let denc = crate::swift::enc_container(domain_id);
    let url = format!("{identity}/projects?name={enc}&domain_id={denc}");
    match get(swift, &format!("GET Keystone projects named {w}"), &url).await? {
        Found::Yes(v) => {
            if let Some(id) = v["projects"].as_array().and_then(|a| a.first()).and_then(|p| p["id"].as_str()) {
                return Ok(ShareTarget { id: id.to_string(), name: Some(w.to_string()) });
            }
            return Err(unknown(w, domain_id));
        }
        Found::No => return Err(unknown(w, domain_id)),
        Found::Refused(m) => refusals.push(m),
    }
    // Among the caller's own projects.
    if own.is_none() {
        let url = format!("{identity}/auth/projects");
        *own = Some(match get(swift, "GET Keystone projects of these credentials", &url).await? {
            Found::Yes(v) => v["projects"].as_array().cloned().unwrap_or_default(),
            _ => vec![],
        });
    }
    let mine = own.as_deref().unwrap_or_default();
    if let Some(p) = mine.iter().find(|p| p["id"].as_str() == Some(w)) {
        return Ok(ShareTarget { id: p["id"].as_str().unwrap_or(w).to_string(), name: None });
    }
    if let Some(p) = mine.iter().find(|p| p["name"].as_str() == Some(w) && p["domain_id"].as_str() == Some(domain_id)) {
        return Ok(ShareTarget { id: p["id"].as_str().unwrap_or(w).to_string(), name: Some(w.to_string()) });
    }
    if looks_like_id(w) {
        tracing::warn!(
            "project {w}: Keystone does not let these credentials check that it exists ({}); sharing with it as given",
            refusals.first().map(String::as_str).unwrap_or("403")
        );
        return Ok(ShareTarget { id: w.to_string(), name: None });
    }
    Err(Error::input(format!(
        "cannot find project `{w}`: it is not a project of these credentials, and Keystone does not let them look up others ({})",
        refusals.first().map(String::as_str).unwrap_or("403 Forbidden")
    ))
    .hint("give the project's id instead (`openstack project show NAME -f value -c id`, as someone who may)"))
}

fn unknown(w: &str, domain_id: &str) -> Error {
    Error::input(format!(
        "project `{w}` does not exist in Keystone (no project with that id, nor with that name in domain {domain_id})"
    ))
    .hint("check the name (names are case-sensitive), or --share-domain DOMAIN when the project is in another domain")
}

async fn domain_id_of(swift: &Swift, identity: &str, d: &str) -> Result<String> {
    let enc = crate::swift::enc_container(d);
    if let Found::Yes(v) = get(swift, &format!("GET Keystone domain {d}"), &format!("{identity}/domains/{enc}")).await?
        && let Some(id) = v["domain"]["id"].as_str()
    {
        return Ok(id.to_string());
    }
    match get(swift, &format!("GET Keystone domains named {d}"), &format!("{identity}/domains?name={enc}")).await? {
        Found::Yes(v) => v["domains"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|x| x["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::input(format!("domain `{d}` does not exist in Keystone")).hint("check --share-domain")
            }),
        Found::No => Err(Error::input(format!("domain `{d}` does not exist in Keystone")).hint("check --share-domain")),
        // Only administrators may look domains up: take the value as an id.
        Found::Refused(_) => Ok(d.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shape() {
        assert!(looks_like_id("388d99236be74548b022d6f8b597853f"));
        assert!(!looks_like_id("demo2"));
        assert!(!looks_like_id("388d99236be74548b022d6f8b597853"));
        assert!(!looks_like_id("388d99236be74548b022d6f8b597853g"));
    }
}
