//! Is the source still the file the job read? Size, mtime and a sampled
//! fingerprint say most changes; a file rewritten in place with its size and mtime
//! put back (`cp` then `touch -d`, a build that pins mtimes) passes them all, but
//! moves the inode change time, which no user can set back. When that (or the
//! inode) moved, the file is read once (nothing is sent) and every range the
//! journal has an MD5 for is compared with it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{Engine, naming_of};
use crate::error::{Error, Result};
use crate::journal::{JobRecord, Journal, SourceStamp};
use crate::runtime::blocking;
use crate::source;

impl Engine {
    /// Compares the file with the journal when its change stamp moved since it was
    /// last checked (see the module): `Some(refusal)` when bytes the journal hashed
    /// differ; same bytes: the new stamp is recorded. Blocking reads, off the async
    /// workers; Ctrl-C stops it between segments.
    pub(super) fn content_check(&self, journal: &Journal, file: &File) -> Result<Option<Error>> {
        let job = journal.job()?;
        let now = stamp_of(file, &job.file)?;
        if now.ctime_ns.is_none() || journal.source_stamp()? == now {
            // Unchanged, or a block device (its size and sampled content are all that can be known).
            return Ok(None);
        }
        let segs = journal.segments()?;
        let naming = naming_of(&job);
        let to_read: u64 = segs.iter().filter(|s| s.md5.is_some() || s.is_zero()).map(|s| s.length).sum();
        if to_read > 0 {
            tracing::info!(
                "job {}: {} was rewritten or replaced since it was last read (its change time moved): comparing its content with the journal ({} to read, nothing sent)",
                job.id,
                job.file,
                crate::units::format_size(to_read)
            );
        }
        let mut differ = vec![];
        blocking(|| -> Result<()> {
            let mut buf = vec![0u8; source::CHUNK];
            for s in &segs {
                if *self.cancel.borrow() {
                    return Err(crate::runtime::interrupted(&job.id));
                }
                let same = match &s.md5 {
                    _ if s.is_zero() => all_zero(file, s.offset, s.length, &mut buf),
                    Some(md5) => source::md5_range(file, s.offset, s.length).map(|m| m.eq_ignore_ascii_case(md5)),
                    None => continue,
                };
                let same = same.map_err(|e| {
                    Error::io(format!("job {}: cannot read {} to compare it with the journal", job.id, job.file), e)
                })?;
                if !same {
                    differ.push(naming.label(s));
                }
            }
            Ok(())
        })?;
        if differ.is_empty() {
            journal.put_source_stamp(&now)?;
            return Ok(None);
        }
        Ok(Some(changed_error(&job, &differ)))
    }
}

/// True when `len` bytes at `off` of `file` are all zero.
fn all_zero(file: &File, off: u64, len: u64, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut done = 0u64;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        file.read_exact_at(&mut buf[..n], off + done)?;
        if !crate::zeros::is_zero(&buf[..n]) {
            return Ok(false);
        }
        done += n as u64;
    }
    Ok(true)
}

/// The refusal when the file's bytes are not those the job uploaded.
fn changed_error(job: &JobRecord, differ: &[String]) -> Error {
    let n = differ.len();
    let first = differ.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let target = format!("{}/{}", job.container, job.object);
    let again = replace_command(job);
    if job.manifest_etag.is_some() {
        Error::failed(format!(
            "job {}: {} is not the file this job uploaded: {n} segment(s) differ ({first}); {target} on the server still holds the version uploaded",
            job.id, job.file
        ))
        .hint(format!(
            "to upload this file in its place: `{again}` (the old object stays whole until the new one is written and verified)"
        ))
    } else {
        Error::failed(format!(
            "job {}: {} has changed since the upload started: {n} segment(s) already read differ ({first})",
            job.id, job.file
        ))
        .hint(format!("restore the original file, or upload this one in its place: `{again}`"))
    }
}

/// The command that uploads the job's file again in the place of its object (as
/// the same kind of manifest: a DLO stays a DLO).
pub(super) fn replace_command(job: &JobRecord) -> String {
    let dlo = if job.plan.manifest == crate::plan::ManifestKind::Dlo { " --manifest dlo" } else { "" };
    format!(
        "k5up upload {} -c {} -o {}{dlo} --replace",
        shell_path(&job.file_path()),
        shell_word(&job.container),
        shell_word(&job.object)
    )
}

/// `s` quoted for a shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A path for a shell: quoted as a word, or, when it is not UTF-8, as bash's `$'…'`
/// with `\xNN` for the bytes that are not (so the command reaches the same file).
fn shell_path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = p.to_str() {
        return shell_word(s);
    }
    let mut out = String::from("$'");
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\'' | '\\' => out.extend(['\\', c]),
                c if c.is_control() => c.to_string().bytes().for_each(|b| out.push_str(&format!("\\x{b:02x}"))),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('\'');
    out
}

/// The stamp of a source just opened, for a new job.
pub(super) fn stamp_of(file: &File, path: &str) -> Result<SourceStamp> {
    source::stamp(file).map_err(|e| Error::io(format!("cannot stat {path}"), e))
}
