//! `verify --deep`: the object read back and compared segment by segment with the
//! journal, reading on past segments the server holds with other bytes.

use futures_util::StreamExt;
use md5::{Digest, Md5};

use super::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::SegmentRecord;
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;

use super::verify::{Check, NAMED, Repair, expected_md5, holder, resume_fix, trans_note};

impl Engine {
    /// Reads the object back and compares it with the journal segment by segment
    /// (each segment's bytes against its journaled MD5) and with the local file as a
    /// whole. A segment the server holds with other bytes is named with both MD5s:
    /// Swift stops reading an SLO at a segment whose ETag is not its manifest
    /// entry's (409 when it is the first one asked for), so the read goes on from the
    /// next segment (a `Range` GET) and every such segment is found in one pass. A
    /// read that breaks at a segment the server holds whole is a fault of the link:
    /// read on from that byte, and after three breaks there an interruption (75).
    pub(super) async fn read_back(
        &self,
        job: &crate::journal::JobRecord,
        segs: &[SegmentRecord],
        naming: &SegmentNaming,
    ) -> Result<Check> {
        let path = job.file_path();
        let local = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
            let f = std::fs::File::open(&path)?;
            let len = crate::source::size_of(&f)?;
            Ok((crate::source::md5_range(&f, 0, len)?, len))
        });
        let target = format!("{}/{}", job.container, job.object);
        let size = job.plan.file_size;
        let mut order: Vec<&SegmentRecord> = segs.iter().collect();
        order.sort_by_key(|s| s.offset);
        // The whole object's MD5, while no segment was skipped.
        let mut whole = Some(Md5::new());
        let mut seg = Md5::new();
        // The next byte to read, and the segment that holds it.
        let (mut pos, mut k) = (0u64, 0usize);
        let mut differs: Vec<String> = vec![];
        let mut unchecked = 0usize;
        let mut extra = 0u64;
        let mut breaks: (u64, u32) = (u64::MAX, 0);
        let slo = job.plan.manifest == ManifestKind::Slo;
        let reading = |e: String| format!("job {}: reading {target} back: {e}", job.id);
        loop {
            let resp = match self.swift.get_from(&job.container, &job.object, pos).await {
                Ok(r) => r,
                Err(e) if e.status == Some(409) && k < order.len() => {
                    // Swift checked the first segment of the read and refused it.
                    let s = order[k];
                    let why = format!("the server refused to read it (HTTP 409{})", trans_note(e.trans_id.as_deref()));
                    match self.segment_differs(job, naming, segs, s, &why).await? {
                        Some(d) => {
                            differs.push(d);
                            whole = None;
                            (pos, k, seg) = (s.offset + s.length, k + 1, Md5::new());
                            continue;
                        }
                        None => {
                            return Err(e
                                .into_error(ErrorKind::Failed)
                                .context(reading(format!(
                                    "{} is whole on the server, yet the manifest's entry for it does not match it",
                                    naming.label(s)
                                )))
                                .hint(resume_fix(&job.id, "writes the manifest again").to_string()));
                        }
                    }
                }
                Err(e) => {
                    return Err(e
                        .into_error(ErrorKind::Resumable)
                        .context(format!("job {}: reading {target} back", job.id)));
                }
            };
            let trans = crate::swift::error::trans_id(resp.headers());
            if pos > 0 && resp.status().as_u16() != 206 {
                return Err(Error::failed(reading(format!(
                    "asked for the bytes from {pos} on, the server answered HTTP {} (not 206){}",
                    resp.status().as_u16(),
                    trans_note(trans.as_deref())
                )))
                .hint(format!(
                    "verify without --deep compares the server's segments with the journal: `k5up verify {}`",
                    job.id
                )));
            }
            let mut stream = resp.bytes_stream();
            let mut cut: Option<reqwest::Error> = None;
            while let Some(chunk) = stream.next().await {
                let c = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        cut = Some(e);
                        break;
                    }
                };
                if let Some(w) = whole.as_mut() {
                    w.update(&c);
                }
                let mut rest = &c[..];
                while !rest.is_empty() {
                    let Some(s) = order.get(k) else {
                        extra += rest.len() as u64;
                        pos += rest.len() as u64;
                        break;
                    };
                    let end = s.offset + s.length;
                    let take = rest.len().min(end.saturating_sub(pos) as usize);
                    seg.update(&rest[..take]);
                    (pos, rest) = (pos + take as u64, &rest[take..]);
                    if pos >= end {
                        let got = hex::encode(std::mem::take(&mut seg).finalize());
                        match expected_md5(s) {
                            Some(want) if !want.eq_ignore_ascii_case(&got) => differs.push(format!(
                                "{} (bytes {}-{}): {}/{} read back with MD5 {got}, expected MD5 {want} ({} bytes, the file's as journaled)",
                                naming.label(s),
                                s.offset,
                                end.saturating_sub(1),
                                naming.container,
                                holder(slo, naming, segs, s).0,
                                s.length
                            )),
                            Some(_) => {}
                            None => unchecked += 1,
                        }
                        k += 1;
                    }
                }
            }
            if cut.is_none() && pos >= size {
                break;
            }
            // The body ended before the object did: at which segment, and why?
            let why = match &cut {
                Some(e) => format!(
                    "the server stopped sending at byte {pos} ({}{})",
                    crate::swift::SwiftError::transport("GET", e).detail,
                    trans_note(trans.as_deref())
                ),
                None => format!("the body ended at byte {pos}{}", trans_note(trans.as_deref())),
            };
            let Some(s) = order.get(k).copied() else {
                return Err(Error::failed(reading(why)));
            };
            if let Some(d) = self.segment_differs(job, naming, segs, s, &why).await? {
                differs.push(d);
                whole = None;
                (pos, k, seg) = (s.offset + s.length, k + 1, Md5::new());
                continue;
            }
            // The server holds that segment whole: the link broke. Read on from there.
            breaks = if breaks.0 == pos { (pos, breaks.1 + 1) } else { (pos, 1) };
            if breaks.1 >= 3 {
                return Err(Error::resumable(reading(format!(
                    "{why}, three times, in {} (which the server holds whole)",
                    naming.label(s)
                )))
                .hint(format!("check the network, then `k5up verify {} --deep` again", job.id)));
            }
            tracing::warn!("job {}: reading {target} back: {why}; reading on from there", job.id);
        }
        let (local, _) = local
            .await
            .map_err(|e| Error::failed(format!("job {}: the read of the file failed: {e}", job.id)).caused_by(e))?
            .map_err(|e| {
                Error::io(format!("job {}: cannot read {}", job.id, job.file), e).hint(format!(
                    "`k5up verify {}` (without --deep) compares the server with the journal without the file",
                    job.id
                ))
            })?;
        let remote = whole.map(|w| hex::encode(w.finalize()));
        let resume = || resume_fix(&job.id, "sends these segments again and writes the manifest again");
        if !differs.is_empty() {
            let n = differs.len();
            let more = if n > NAMED { format!("; and {} more", n - NAMED) } else { String::new() };
            let rest = order.len().saturating_sub(n);
            return Ok(Check::new(
                "content",
                false,
                format!(
                    "{n} segment(s) of {target} do not hold the file's bytes: {}{more}; the other {rest} read back with their journaled MD5s",
                    differs[..n.min(NAMED)].join("; ")
                ),
                resume,
            ));
        }
        if extra > 0 || pos != size {
            return Ok(Check::new(
                "content",
                false,
                format!("read back {pos} bytes of {target}; the file has {size}"),
                resume,
            ));
        }
        let remote = remote.unwrap_or_default();
        let ok = remote.eq_ignore_ascii_case(&local);
        let detail = format!("read back {pos} bytes with MD5 {remote}; the local file's MD5 is {local}");
        if ok || unchecked > 0 {
            return Ok(Check::new("content", ok, detail, resume));
        }
        // Every segment read back with its journaled MD5: the file is what changed.
        Ok(Check::new(
            "content",
            false,
            format!(
                "{detail}: every segment read back with the MD5 journaled when it was uploaded, so the file {} changed since",
                job.file
            ),
            || Repair {
                command: super::content::replace_command(job),
                does: "uploads the file as it is now in the object's place (or restore the file as it was uploaded)"
                    .into(),
            },
        ))
    }

    /// When the server does not hold `s`'s bytes as journaled: the segment named, what
    /// the object holding them is instead, and how the read met it (`why`).
    async fn segment_differs(
        &self,
        job: &crate::journal::JobRecord,
        naming: &SegmentNaming,
        segs: &[SegmentRecord],
        s: &SegmentRecord,
        why: &str,
    ) -> Result<Option<String>> {
        let (name, want, want_len) = holder(job.plan.manifest == ManifestKind::Slo, naming, segs, s);
        let head = self.swift.head(&naming.container, &name).await.map_err(|e| {
            e.into_error(ErrorKind::Resumable).context(format!(
                "job {}: checking {} of {}/{}",
                job.id,
                naming.label(s),
                job.container,
                job.object
            ))
        })?;
        let got = match &head {
            None => "is missing".to_string(),
            Some(h) if h.size == want_len && want.as_deref().is_some_and(|w| h.etag.eq_ignore_ascii_case(w)) => {
                return Ok(None);
            }
            Some(h) if h.size != want_len => format!("holds {} bytes with MD5 {}", h.size, h.etag),
            Some(h) => format!("holds MD5 {}", h.etag),
        };
        let of = if name == naming.name(s) { "the file's as journaled" } else { "the object its manifest entry names" };
        Ok(Some(format!(
            "{} (bytes {}-{}): {}/{name} {got}, expected MD5 {} ({want_len} bytes, {of}); {why}",
            naming.label(s),
            s.offset,
            (s.offset + s.length).saturating_sub(1),
            naming.container,
            want.as_deref().unwrap_or("(not journaled)")
        )))
    }
}
