//! `--base`: the previous version of an image on the server. Its segments (read from
//! its SLO manifest, nested ones included, its DLO listing, or the plain object
//! itself) give the new plan its cuts, so that unchanged regions hash to the same
//! MD5s; a segment of the new file with the MD5 and length of a base segment is
//! then made by a server-side copy into the new object's own segment: deleting
//! the base later never breaks the new version.

use percent_encoding::percent_decode_str;

use crate::error::{Error, ErrorKind, Result};
use crate::journal::BaseSegment;
use crate::swift::{StoreTraits, Swift, manifest};

/// Nested SLOs deeper than this are refused (Swift allows 10 levels).
const MAX_DEPTH: usize = 10;

/// `CONTAINER/OBJECT` of `--base`, split at the first `/`.
pub(crate) fn parse(arg: &str) -> Result<(String, String)> {
    match arg.split_once('/') {
        Some((c, o)) if !c.is_empty() && !o.is_empty() => Ok((c.to_string(), o.to_string())),
        _ => Err(Error::input(format!("--base {arg:?}: expected CONTAINER/OBJECT"))
            .hint("name the previous version as it is on the server, e.g. --base images/app-v1.raw")),
    }
}

/// The segments of `container/object`, in order, with their offsets.
pub(super) async fn segments_of(
    swift: &Swift,
    store: &StoreTraits,
    container: &str,
    object: &str,
    journaled: impl FnOnce(&str) -> Option<Vec<BaseSegment>>,
) -> Result<Vec<BaseSegment>> {
    let what = format!("--base {container}/{object}");
    let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable).context(what.clone());
    let Some(head) = swift.head(container, object).await.map_err(se)? else {
        return Err(Error::input(format!("{what}: no such object on the server"))
            .hint("check the name (`swift list CONTAINER`), or upload without --base"));
    };
    let mut out = vec![];
    if head.slo && !store.manifest_readable {
        // The store cannot give the manifest back (Ceph RGW): the job that wrote it
        // knows its segments, if this journal has it.
        out = journaled(&head.etag).ok_or_else(|| {
            Error::input(format!(
                "{what}: this object store cannot give an SLO manifest back (GET ?multipart-manifest=get is empty), and no job of this journal wrote this version of it (ETag {})",
                head.etag
            ))
            .hint("give --base an object that k5up uploaded from this journal, a DLO, or a plain object; or upload without --base")
        })?;
    } else if head.slo {
        slo_leaves(swift, container, object, 0, &mut out).await?;
    } else if let Some(m) = head.dlo_manifest.as_deref() {
        let value = percent_decode_str(m).decode_utf8_lossy().to_string();
        let (c, prefix) = value.split_once('/').unwrap_or((value.as_str(), ""));
        for e in swift.list(c, prefix).await.map_err(se)? {
            out.push(BaseSegment {
                offset: 0,
                length: e.bytes,
                md5: Some(e.hash),
                container: c.to_string(),
                name: e.name,
            });
        }
    } else {
        let md5 = Some(head.etag.clone());
        out.push(BaseSegment { offset: 0, length: head.size, md5, container: container.into(), name: object.into() });
    }
    let mut at = 0;
    for s in out.iter_mut() {
        s.offset = at;
        at += s.length;
    }
    if at != head.size {
        return Err(Error::failed(format!("{what}: its segments hold {at} bytes, the object {}", head.size))
            .hint("the base changed while it was read; try again, or upload without --base"));
    }
    Ok(out)
}

/// The segments of a finished job as its manifest lists them, in order, from its
/// journal: for a store that cannot give a manifest back (Ceph RGW).
pub(super) fn as_base(job: &crate::journal::JobRecord, segs: &[crate::journal::SegmentRecord]) -> Vec<BaseSegment> {
    let naming = super::naming_of(job);
    let zero = segs.iter().filter(|s| s.is_zero()).map(|s| s.length).max();
    segs.iter()
        .map(|s| {
            let slo = job.plan.manifest == crate::plan::ManifestKind::Slo;
            let (name, md5) = match (s.is_zero() && slo, s.repeat_of()) {
                // An SLO's zero segment names the whole zero object (a store without
                // ranges), or a range of it: part of it, never a copy source. (A DLO's
                // are copies under its own names.)
                (true, _) => {
                    let z = zero.unwrap_or(s.length);
                    let md5 = (z == s.length).then(|| crate::zeros::md5_of_zeros(z));
                    (naming.zero_name(&format!("object+{z}")), md5)
                }
                (false, Some(of)) => (naming.name_at(of, s.length), s.md5.clone()),
                (false, None) if s.is_zero() => (naming.name(s), Some(crate::zeros::md5_of_zeros(s.length))),
                (false, None) => (naming.name(s), s.md5.clone()),
            };
            BaseSegment { offset: s.offset, length: s.length, md5, container: naming.container.clone(), name }
        })
        .collect()
}

/// The leaves of an SLO (sub-manifests followed), appended to `out`.
async fn slo_leaves(
    swift: &Swift,
    container: &str,
    object: &str,
    depth: usize,
    out: &mut Vec<BaseSegment>,
) -> Result<()> {
    let what = format!("--base: manifest {container}/{object}");
    if depth > MAX_DEPTH {
        return Err(Error::input(format!("{what} is nested more than {MAX_DEPTH} levels deep")));
    }
    let resp = swift
        .get(container, object, "multipart-manifest=get")
        .await
        .map_err(|e| e.into_error(ErrorKind::Resumable).context(what.clone()))?;
    let unreadable = |e: &dyn std::fmt::Display| Error::resumable(format!("{what}: unreadable manifest: {e}"));
    let body = resp.bytes().await.map_err(|e| unreadable(&e))?;
    for e in manifest::parse_stored(&body).map_err(|e| unreadable(&e))? {
        let (c, name) = e.container_object().ok_or_else(|| Error::failed(format!("{what}: odd entry {:?}", e.path)))?;
        if e.is_sub_manifest() {
            Box::pin(slo_leaves(swift, c, name, depth + 1, out)).await?;
            continue;
        }
        // A range of a segment holds only part of it: a cut, never a copy source.
        out.push(BaseSegment {
            offset: 0,
            length: e.content_len(),
            md5: e.whole_md5().map(str::to_string),
            container: c.to_string(),
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_container_then_object() {
        assert_eq!(parse("images/app/v1.raw").unwrap(), ("images".into(), "app/v1.raw".into()));
        assert!(parse("images").is_err());
        assert!(parse("/x").is_err());
        assert!(parse("images/").is_err());
    }
}
