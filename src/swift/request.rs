//! Request plumbing: the URL of a container, an object or the account below the
//! storage URL, the current token, and the retry loop around idempotent requests.

use reqwest::{Method, RequestBuilder, Response};

use super::path::{enc_container, object_path};
use super::{Swift, SwiftError};
use crate::retry;

impl Swift {
    /// Sends one request to `container[/object][?query]` with the current token.
    /// A 401 drops the token (the next call logs in again) and is classed `Reauth`.
    pub(crate) async fn send(
        &self,
        op: &str,
        method: Method,
        container: &str,
        object: Option<&str>,
        query: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        let base = self.auth().token().await?.storage_url.clone();
        let mut url = match object {
            Some(o) => format!("{base}/{}", object_path(container, o)),
            None => format!("{base}/{}", enc_container(container)),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        self.session.send_url(op, method, &url, build).await
    }

    /// Sends one request to the account itself (its storage URL).
    pub(crate) async fn send_account(
        &self,
        op: &str,
        method: Method,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(self.policy(), op, |_| async {
            let url = self.auth().token().await?.storage_url.clone();
            self.session.send_url(op, method.clone(), &url, &build).await
        })
        .await
    }

    /// [`Swift::send`] with retries, for idempotent requests without a streamed body.
    pub(super) async fn send_retrying(
        &self,
        op: &str,
        method: Method,
        container: &str,
        object: Option<&str>,
        query: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(self.policy(), op, |_| self.send(op, method.clone(), container, object, query, &build)).await
    }
}

/// A request's answer; `None` when the server says 404 (there is no such thing).
pub(super) fn unless_404(r: Result<Response, SwiftError>) -> Result<Option<Response>, SwiftError> {
    match r {
        Ok(resp) => Ok(Some(resp)),
        Err(e) if e.status == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}
