//! Logging in: Swift v1 (tempauth) and Keystone v3 (password or application
//! credential), their failures in the user's words, and the Keystone catalog.
//!
//! Reference: <https://docs.openstack.org/api-ref/identity/v3/#password-authentication-with-scoped-authorization>

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::error::{SwiftError, trans_id};
use super::identity::{Keystone, KeystoneMethod, Token};
use super::secret::Secret;
use crate::retry::Class;

pub(super) async fn v1(http: &reqwest::Client, url: &str, user: &str, key: &Secret) -> Result<Token, SwiftError> {
    let op = format!("v1 login of {user} at {url}");
    let issued = Instant::now();
    let resp = http
        .get(url)
        .header("X-Auth-User", user)
        .header("X-Auth-Key", key.header(&op)?)
        .send()
        .await
        .map_err(|e| SwiftError::transport(&op, &e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if !(200..300).contains(&status) {
        let body = resp.text().await.unwrap_or_default();
        return Err(login_error(&op, status, &headers, &body, "Swift auth (v1)"));
    }
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(token), Some(storage_url)) = (get("x-auth-token"), get("x-storage-url")) else {
        return Err(not_the_service(
            &op,
            &format!("HTTP {status} without X-Auth-Token and X-Storage-Url"),
            "Swift auth (v1)",
        ));
    };
    // A lifetime too large for the clock (`1e30`) is taken as "no expiry known".
    let expires = get("x-auth-token-expires")
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .and_then(|d| issued.checked_add(d));
    Ok(Token {
        value: Secret::new(token),
        storage_url: storage_url.trim_end_matches('/').to_string(),
        issued,
        expires,
        catalog: None,
        scope: None,
    })
}

pub(super) async fn keystone(http: &reqwest::Client, k: &Keystone) -> Result<Token, SwiftError> {
    let base = k.auth_url.trim_end_matches('/');
    let url = if base.ends_with("/v3") { format!("{base}/auth/tokens") } else { format!("{base}/v3/auth/tokens") };
    let op = format!("keystone login at {url}");
    let body = match &k.method {
        KeystoneMethod::Password { user, password, project } => {
            let mut u = user.to_json();
            u["password"] = json!(password.expose());
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": u}},
                "scope": {"project": project.to_json()}
            }})
        }
        KeystoneMethod::AppCredential { id, secret } => json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret.expose()}
        }}}),
    };
    let issued = Instant::now();
    let resp = http
        .post(&url)
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .map_err(|e| SwiftError::transport(&op, &e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(|e| SwiftError::transport(&op, &e))?;
    if status != 201 && status != 200 {
        return Err(login_error(&op, status, &headers, &text, "Keystone v3"));
    }
    let token = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| not_the_service(&op, "without X-Subject-Token", "Keystone v3"))?
        .to_string();
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| SwiftError::local(&op, format!("unreadable token body: {e}"), Class::Fatal))?;
    let t = &v["token"];
    // Token life from the server's own clock (issued_at → expires_at): immune to skew.
    let life = match (t["issued_at"].as_str().and_then(parse_rfc3339), t["expires_at"].as_str().and_then(parse_rfc3339))
    {
        (Some(a), Some(b)) if b > a => Duration::try_from(b.duration_since(a)).ok(),
        _ => None,
    };
    let storage_url = match &k.storage_url {
        // A K5 profile's template: the project id comes with the token.
        Some(u) if u.contains("$(project_id)s") => match t["project"]["id"].as_str() {
            Some(p) => u.replace("$(project_id)s", p),
            None => {
                return Err(SwiftError::local(&op, "the token is not scoped to a project", Class::Fatal));
            }
        },
        Some(u) => u.clone(),
        None => catalog_endpoint(&t["catalog"], "object-store", &k.interface, k.region.as_deref())
            .map_err(|d| SwiftError::local(&op, d, Class::Fatal))?,
    };
    Ok(Token {
        value: Secret::new(token),
        storage_url: storage_url.trim_end_matches('/').to_string(),
        issued,
        expires: life.map(|l| issued + l),
        catalog: Some(t["catalog"].clone()),
        scope: t["project"]["id"].as_str().map(|p| super::identity::Scope {
            project_id: p.to_string(),
            project_name: t["project"]["name"].as_str().unwrap_or_default().to_string(),
            user_domain_id: t["user"]["domain"]["id"].as_str().unwrap_or_default().to_string(),
            user_domain_name: t["user"]["domain"]["name"].as_str().unwrap_or_default().to_string(),
        }),
    })
}

fn login_error(op: &str, status: u16, headers: &reqwest::header::HeaderMap, body: &str, service: &str) -> SwiftError {
    let mut e = SwiftError::from_response(op, status, headers, body);
    if status == 401 || status == 403 {
        // Wrong credentials at login: retrying cannot help.
        e.class = Class::Fatal;
        e.status = Some(401);
        e.detail = "the credentials were rejected".into();
        e.trans_id = e.trans_id.or_else(|| trans_id(headers));
    } else if status < 500 && status != 429 && status != 408 {
        // A server that answers, but not as this service would (Glance's 300 with its
        // version list, a 404 page): the URL is wrong, not the network.
        e = not_the_service(op, &format!("HTTP {status}"), service);
    }
    e
}

/// The answer at a login URL is not that of `service`.
fn not_the_service(op: &str, seen: &str, service: &str) -> SwiftError {
    SwiftError {
        origin: crate::swift::Origin::Endpoint,
        ..SwiftError::local(op, format!("this is not a {service} endpoint (it answered {seen})"), Class::Fatal)
    }
}

/// Finds the URL of a service in a Keystone v3 catalog.
pub(crate) fn catalog_endpoint(
    catalog: &Value,
    kind: &str,
    interface: &str,
    region: Option<&str>,
) -> Result<String, String> {
    let iface = interface.trim_end_matches("URL");
    let mut seen = vec![];
    for svc in catalog.as_array().into_iter().flatten() {
        if svc["type"].as_str() != Some(kind) {
            continue;
        }
        for ep in svc["endpoints"].as_array().into_iter().flatten() {
            let ep_region = ep["region_id"].as_str().or(ep["region"].as_str()).unwrap_or("");
            let ep_iface = ep["interface"].as_str().unwrap_or("");
            seen.push(format!("{ep_iface}/{ep_region}"));
            if ep_iface == iface
                && region.is_none_or(|r| r == ep_region)
                && let Some(u) = ep["url"].as_str()
            {
                return Ok(u.to_string());
            }
        }
    }
    Err(format!(
        "the catalog has no {kind} endpoint for interface {iface}{} (found: {})",
        region.map(|r| format!(" in region {r}")).unwrap_or_default(),
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    ))
}

/// Parses an RFC 3339 timestamp (Keystone's `issued_at`/`expires_at`); `None` for
/// anything else, never a panic.
pub(crate) fn parse_rfc3339(s: &str) -> Option<jiff::Timestamp> {
    s.trim().parse::<jiff::Timestamp>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let secs = |s: &str| parse_rfc3339(s).map(|t| t.as_millisecond() as f64 / 1000.0);
        assert_eq!(secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(secs("2026-11-25T12:00:00.500000Z"), Some(1_795_608_000.5));
        assert_eq!(secs("2026-11-25T13:00:00+01:00"), Some(1_795_608_000.0));
        assert_eq!(secs("yesterday"), None);
        // Once a panic: a non-ASCII offset (Arabic-Indic digits) from a server.
        assert_eq!(secs("2026-12-01T06:00:00+\u{0669}\u{0669}:00"), None);
        assert_eq!(secs("2026-12-01T06:00:00\u{e9}"), None);
        assert_eq!(secs(""), None);
    }

    #[test]
    fn catalog() {
        let c = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "R1", "url": "http://k"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "internal", "region_id": "R1", "url": "http://internal"},
                {"interface": "public", "region_id": "R1", "url": "http://r1"},
                {"interface": "public", "region_id": "R2", "url": "http://r2"}]}
        ]);
        assert_eq!(catalog_endpoint(&c, "object-store", "public", Some("R2")).unwrap(), "http://r2");
        assert_eq!(catalog_endpoint(&c, "object-store", "internalURL", None).unwrap(), "http://internal");
        let e = catalog_endpoint(&c, "object-store", "public", Some("R9")).unwrap_err();
        assert!(e.contains("region R9") && e.contains("public/R1"), "{e}");
    }
}
