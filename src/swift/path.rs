//! Names into URLs: how a container or object name is percent-encoded in a URL
//! path, a query value, `X-Object-Manifest` and `X-Copy-From`. Pure.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters left as they are in a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// In object names `/` stays too.
const OBJECT: &AsciiSet = &SEGMENT.remove(b'/');

/// Percent-encodes a container name for a URL path.
pub(crate) fn enc_container(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Percent-encodes an object name (keeping `/`) for a query value or `X-Object-Manifest`,
/// never for a URL path (see [`object_path`]).
pub(crate) fn enc_object(s: &str) -> String {
    utf8_percent_encode(s, OBJECT).to_string()
}

/// The value of `X-Object-Manifest` for segments under `prefix` in `container`. Swift
/// refuses a raw value whose prefix starts with `/` or that holds `?` or `&`, and
/// decodes it before use: every `/` of the prefix is encoded.
pub(crate) fn dlo_manifest_value(container: &str, prefix: &str) -> String {
    format!("{}/{}", enc_container(container), enc_container(prefix))
}

/// The value of `X-Copy-From` for `container/object`: Swift decodes it, then splits
/// the container off at the first `/`, so every `/` of the object is encoded too.
pub(crate) fn copy_source_value(container: &str, object: &str) -> String {
    format!("{}/{}", enc_container(container), enc_container(object))
}

/// The URL path of an object below the storage URL: `<container>%2F<object>`, every
/// `/` encoded. A name is data, never a path to resolve: URL parsers (reqwest's
/// included) and the HTTP clients of Glance remove `.` and `..` path segments, even
/// percent-encoded ones, so `a/../b` would reach another object or another container.
/// As one path segment with `%2F` inside, no part of it can be a dot segment; Swift
/// decodes the path before splitting it, so it sees exactly `<container>/<object>`.
pub(crate) fn object_path(container: &str, object: &str) -> String {
    format!("{}%2F{}", enc_container(container), enc_container(object))
}
