//! Zeros made on the server instead of sent: a small seed of zeros is PUT once, an
//! SLO "maker" lists it as often as the longest zero segment needs, and a
//! server-side copy (`PUT` + `X-Copy-From`, with a `Range`) of the maker writes a
//! plain object of exactly the zeros wanted. Only the seed crosses the link.
//!
//! An SLO job copies one zero object and points every zero run at it with a
//! `range`; a DLO job copies each zero segment (its listing must hold real
//! objects). The seed and the maker live beside the segments (`…/zero/`, outside a
//! DLO's prefix) and are deleted once the manifest is verified. The zero object
//! belongs to this job alone, so `swift delete` of another image never reaches it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;

use crate::names::SegmentNaming;
use crate::swift::manifest::{Entry, slo_body, slo_etag};
use crate::swift::{Swift, SwiftError};
use crate::zeros::{BLOCK, md5_of_zeros};

/// True when `container/name` holds `len` zeros whole (its size and ETag say so).
pub(crate) async fn holds_zeros(swift: &Swift, container: &str, name: &str, len: u64) -> Result<bool, SwiftError> {
    let md5 = crate::runtime::blocking(|| md5_of_zeros(len));
    Ok(swift.head(container, name).await?.is_some_and(|h| h.size == len && h.etag.eq_ignore_ascii_case(&md5)))
}

/// Sends `len` zeros (from memory, streamed) to `container/name` and returns the
/// bytes sent (callers first ask [`holds_zeros`]). The way to zeros on a store that
/// cannot make them (Ceph RGW ignores SLO ranges and copies whole objects): one
/// object per length, sent once.
pub(crate) async fn put_zeros(swift: &Swift, container: &str, name: &str, len: u64) -> Result<u64, SwiftError> {
    let md5 = crate::runtime::blocking(|| md5_of_zeros(len));
    let op = format!("PUT zero object {container}/{name} ({})", crate::units::format_size(len));
    crate::retry::retry(swift.policy(), &op, |_| async {
        let chunks = crate::zeros::zero_pieces(len).map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from_static(p)));
        let body = crate::swift::Body::wrap_stream(futures_util::stream::iter(chunks));
        swift.put_segment(&op, container, name, Some(&md5), len, body).await.map(|_| ())
    })
    .await?;
    Ok(len)
}

/// The maker of one job's zeros.
#[derive(Debug)]
pub(crate) struct ZeroSource {
    /// A plain zero object of `maker_len`, sent once, copied whole (no seed, no
    /// maker): for a store that cannot make zeros of any length.
    plain: bool,
    container: String,
    seed: String,
    maker: String,
    seed_len: u64,
    /// The maker's length: the longest zero segment it can make.
    maker_len: u64,
    made: OnceCell<()>,
    /// Bytes put on the wire for the seed and the maker.
    sent: AtomicU64,
}

impl ZeroSource {
    /// For zero segments of at most `longest` bytes, with manifests of at most
    /// `per_manifest` entries.
    pub(crate) fn new(naming: &SegmentNaming, longest: u64, per_manifest: u64) -> Self {
        let maker_len = longest.max(BLOCK).next_multiple_of(BLOCK);
        let seed_len = maker_len.div_ceil(per_manifest.max(2)).max(BLOCK).next_multiple_of(BLOCK);
        ZeroSource {
            plain: false,
            container: naming.container.clone(),
            seed: naming.zero_name(&format!("seed+{seed_len}")),
            maker: naming.zero_name(&format!("maker+{maker_len}")),
            seed_len,
            maker_len,
            made: OnceCell::new(),
            sent: AtomicU64::new(0),
        }
    }

    /// Zero segments of exactly `unit` bytes, copied whole from one zero object of
    /// that length, sent once.
    pub(crate) fn plain(naming: &SegmentNaming, unit: u64) -> Self {
        ZeroSource {
            plain: true,
            container: naming.container.clone(),
            seed: String::new(),
            maker: naming.zero_name(&format!("object+{unit}")),
            seed_len: 0,
            maker_len: unit,
            made: OnceCell::new(),
            sent: AtomicU64::new(0),
        }
    }

    /// MD5 of `len` zeros.
    pub(crate) fn md5(&self, len: u64) -> String {
        md5_of_zeros(len)
    }

    /// Bytes put on the wire for the seed and the maker so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// PUTs the seed and the maker, once per run (both idempotent).
    async fn ensure(&self, swift: &Swift) -> Result<(), SwiftError> {
        self.made
            .get_or_try_init(|| async {
                if self.plain {
                    if !holds_zeros(swift, &self.container, &self.maker, self.maker_len).await? {
                        let n = put_zeros(swift, &self.container, &self.maker, self.maker_len).await?;
                        self.sent.fetch_add(n, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                let seed_md5 = crate::runtime::blocking(|| self.md5(self.seed_len));
                let op = format!("PUT zero seed {}/{}", self.container, self.seed);
                let body = vec![0u8; self.seed_len as usize];
                swift.put_small(&op, &self.container, &self.seed, "", body, &[("ETag", seed_md5.clone())]).await?;
                let n = self.maker_len / self.seed_len;
                let entry = Entry {
                    path: format!("/{}/{}", self.container, self.seed),
                    etag: seed_md5,
                    size_bytes: self.seed_len,
                    range: None,
                };
                let entries = vec![entry; n as usize];
                let want = slo_etag(&entries);
                let body = slo_body(&entries);
                self.sent.fetch_add(self.seed_len + body.len() as u64, Ordering::Relaxed);
                let r = swift.put_slo(&self.container, &self.maker, body, Some(&want)).await?;
                if r.status != 201 && r.status != 200 {
                    return Err(SwiftError::local(
                        &format!("PUT zero maker {}/{}", self.container, self.maker),
                        format!("the server refused it: {} {}", r.status, r.body.trim()),
                        crate::retry::Class::Fatal,
                    ));
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Writes `len` zeros to `container/name` by a server-side copy of the maker,
    /// and checks the copy's ETag.
    pub(crate) async fn copy_to(&self, swift: &Swift, container: &str, name: &str, len: u64) -> Result<(), SwiftError> {
        self.ensure(swift).await?;
        let op = format!("COPY zeros to {container}/{name}");
        if len == 0 || len > self.maker_len {
            return Err(SwiftError::local(
                &op,
                format!("{len} bytes of zeros: the maker holds {}", self.maker_len),
                crate::retry::Class::Fatal,
            ));
        }
        let want = crate::runtime::blocking(|| self.md5(len));
        if self.plain {
            if len != self.maker_len {
                return Err(SwiftError::local(
                    &op,
                    format!("{len} bytes of zeros: this store's zero object holds {}", self.maker_len),
                    crate::retry::Class::Fatal,
                ));
            }
            return swift.copy(&op, container, name, (&self.container, &self.maker), None, &want).await;
        }
        swift.copy(&op, container, name, (&self.container, &self.maker), Some(len), &want).await
    }
}
