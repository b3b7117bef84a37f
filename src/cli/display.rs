//! What the commands print: human text on stdout, or JSON with --json. Names and
//! messages pass through [`clean`]: a control character in a name cannot break a line.

use super::out::{clean, out};
use crate::engine::{Planned, VerifyReport};
use crate::journal::Root;
use crate::status::{self, StatusView};
use crate::units::format_size;
use crate::{Error, Result};

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
    out!("{s}");
    Ok(())
}

/// `status [JOB]` and `jobs`.
pub(super) fn status(root: &Root, job: Option<&str>, json: bool) -> Result<()> {
    if let Some(id) = job {
        let v = status::read(root, id)?;
        return if json {
            print_json(&v)
        } else {
            print_one(&v);
            Ok(())
        };
    }
    let mut views = vec![];
    for id in root.job_ids()? {
        match status::read(root, &id) {
            Ok(v) => views.push(v),
            Err(e) => {
                eprintln!("k5up: job {id}: {}", e.render(clean));
            }
        }
    }
    if json {
        return print_json(&views);
    }
    if views.is_empty() {
        out!("no jobs in {}", root.path().display());
        return Ok(());
    }
    out!("{:<10} {:<10} {:>8} {:>12}  TARGET", "JOB", "PHASE", "DONE", "SIZE");
    for v in &views {
        let pct = if v.bytes_total > 0 { v.bytes_confirmed as f64 * 100.0 / v.bytes_total as f64 } else { 100.0 };
        out!(
            "{:<10} {:<10} {:>7.1}% {:>12}  {}/{}{}",
            v.job,
            v.phase,
            pct,
            format_size(v.bytes_total),
            clean(&v.container),
            clean(&v.object),
            if v.running { "  (running)" } else { "" }
        );
    }
    for v in views.iter().filter(|v| v.hint.is_some()) {
        eprintln!("k5up: job {}: {}", v.job, clean(v.last_error.as_deref().unwrap_or(&v.phase)));
        eprintln!("  hint: {}", clean(v.hint.as_deref().unwrap_or_default()));
    }
    Ok(())
}

fn print_one(v: &StatusView) {
    let running = match (v.running, v.pid) {
        (true, Some(p)) => format!(" (running, pid {p})"),
        (true, None) => " (running)".into(),
        _ => String::new(),
    };
    out!("job {}  {}{running}", v.job, v.phase);
    out!("  file       {}", clean(&v.file));
    out!(
        "  target     {}/{} ({}, segments in {})",
        clean(&v.container),
        clean(&v.object),
        v.manifest.to_uppercase(),
        clean(&v.segment_container)
    );
    let now = v.segment_size_now.map(|n| format!("; cut to {} now", format_size(n))).unwrap_or_default();
    let splits = match v.splits {
        0 => String::new(),
        n => format!(", {n} split{} to fit the link", if n == 1 { "" } else { "s" }),
    };
    out!(
        "  segments   {} of {} confirmed, up to {} each{now}{splits}",
        v.segments_confirmed,
        v.segments_total,
        format_size(v.segment_size)
    );
    out!("  bytes      {} of {} confirmed", format_size(v.bytes_confirmed), format_size(v.bytes_total));
    let useful = v.goodput.map(|g| format!(", {:.0}% of it confirmed", g * 100.0)).unwrap_or_default();
    out!("  sent       {} (wasted {}{useful})", format_size(v.bytes_sent), format_size(v.bytes_wasted));
    if v.bytes_zero > 0 {
        out!(
            "  zeros      {} not sent (holes and runs of zero MiB blocks, made on the server)",
            format_size(v.bytes_zero)
        );
    }
    if v.bytes_copied_server_side > 0 {
        out!(
            "  copied     {} not sent (unchanged segments of the base, copied on the server)",
            format_size(v.bytes_copied_server_side)
        );
    }
    if v.bytes_deduplicated > 0 {
        out!(
            "  repeats    {} not sent (segments with the bytes of another segment of the image)",
            format_size(v.bytes_deduplicated)
        );
    }
    if v.outages > 0 || v.link_down_secs.is_some() {
        let state = match v.link_down_secs {
            Some(s) => format!("down for {s} s"),
            None => "up".into(),
        };
        out!("  link       {state}, {} outage(s) this run", v.outages);
    }
    if let Some(e) = &v.manifest_etag {
        out!("  etag       {e}");
    }
    for (a, d) in &v.digests {
        out!("  {a:<10} {d}");
    }
    if let Some(i) = &v.import {
        let pct = i.progress.map(|p| format!(" {p}%")).unwrap_or_default();
        let iid = i.import_id.as_deref().map(|x| format!(", import {x}")).unwrap_or_default();
        out!("  import     {} image {}{iid}: {}{pct} ({})", i.kind, i.id, i.status, i.outcome);
        if let Some(m) = &i.message {
            out!("  import msg {}", clean(m));
        }
    }
    for line in shared_lines(v) {
        out!("  shared     {line}");
    }
    if let Some(e) = &v.last_error {
        out!("  last error {}", clean(e));
    }
    if let Some(h) = &v.hint {
        out!("  hint       {}", clean(h));
    }
}

/// After `upload`/`resume`.
pub(super) fn finished(v: StatusView) -> Result<()> {
    let made: Vec<String> = [
        (v.bytes_zero, "zeros"),
        (v.bytes_deduplicated, "repeated segments"),
        (v.bytes_copied_server_side, "unchanged segments of the base"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", format_size(n)))
    .collect();
    let zeros =
        if made.is_empty() { String::new() } else { format!(" (made on the server, not sent: {})", made.join(", ")) };
    out!(
        "job {}: {}/{} is complete: {} in {} segment(s), ETag {}; sent {} in all{zeros}",
        v.job,
        clean(&v.container),
        clean(&v.object),
        format_size(v.bytes_total),
        v.segments_total,
        v.manifest_etag.as_deref().unwrap_or("?"),
        format_size(v.bytes_sent)
    );
    for (a, d) in &v.digests {
        out!("  {a} {d}");
    }
    if let Some(i) = &v.import {
        out!("job {}: imported into {} as image {} ({})", v.job, i.kind, i.id, i.status);
    }
    for line in shared_lines(&v) {
        out!("job {}: shared with {line}", v.job);
    }
    Ok(())
}

/// After `share`.
pub(super) fn shared(v: &StatusView) -> Result<()> {
    let image = v.import.as_ref().map(|i| i.id.as_str()).unwrap_or("?");
    for line in shared_lines(v) {
        out!("job {}: image {image} shared with {line}", v.job);
    }
    Ok(())
}

/// One line per project the image is shared with: `name (id): status`.
fn shared_lines(v: &StatusView) -> Vec<String> {
    v.shared_with
        .iter()
        .map(|(id, status)| {
            let who = match v.shared_with_names.get(id) {
                Some(n) => format!("{} ({id})", clean(n)),
                None => id.clone(),
            };
            let image = v.import.as_ref().map(|i| i.id.as_str()).unwrap_or("IMAGE_ID");
            let note = if status == "pending" {
                format!(" (until that project accepts it: `k5up accept {image}` with its credentials)")
            } else {
                String::new()
            };
            format!("{who}: {status}{note}")
        })
        .collect()
}

/// `upload --dry-run`.
pub(super) fn dry_run(p: &Planned) {
    let j = &p.job;
    out!("job            {}{}", j.id, if p.existing { " (exists: running upload continues it)" } else { "" });
    out!("file           {} ({})", clean(&j.file), format_size(j.plan.file_size));
    out!("target         {}/{}", clean(&j.container), clean(&j.object));
    out!("storage        {}", j.storage_url);
    let ranged = crate::names::SegmentNaming::of_job(&j.segment_container, &j.segment_prefix).ranged;
    out!("segments       {}, in {}", segments_text(&j.plan, ranged), clean(&j.segment_container));
    let levels = if p.manifest_levels > 1 { format!(", nested {} levels", p.manifest_levels) } else { String::new() };
    out!("manifest       {}{levels}", j.plan.manifest.as_str().to_uppercase());
    out!("server limits  {}", describe_limits(&j.limits));
    out!("object store   {} ({})", p.store.traits.describe(), p.store.how);
    if let Some(u) = crate::engine::zero_rule(j, &p.store.traits).and_then(|r| r.unit) {
        out!(
            "zeros          runs cut in pieces of {}: one zero object of that size is sent once (this store cannot make zeros of any length)",
            format_size(u)
        );
    }
    if let Some(i) = &j.import {
        let os = i.os_type.as_deref().map(|o| format!(", os_type {o}")).unwrap_or_default();
        out!("import         {} as `{}` ({}{os})", i.kind.as_str(), clean(&i.image_name), i.disk_format);
    }
    if let Some(s) = &p.share {
        let who: Vec<String> = s.targets.iter().map(|t| clean(&t.describe()).into_owned()).collect();
        out!("share with     {}", who.join(", "));
    }
    if !j.digests.is_empty() {
        out!("digests        {}", j.digests.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "));
    }
    if !p.base.is_empty() {
        let bytes: u64 = p.base.iter().map(|s| s.length).sum();
        out!(
            "base           {} segment(s), {}: the cuts follow them; unchanged segments are copied on the server, not sent",
            p.base.len(),
            format_size(bytes)
        );
    }
    if p.holes > 0 {
        out!(
            "to send        at most {}: {} are holes of the file, made on the server (runs of written zeros are found while hashing)",
            format_size(j.plan.file_size - p.holes),
            format_size(p.holes)
        );
    }
}

/// `verify`.
pub(super) fn verify(r: &VerifyReport, json: bool) -> Result<()> {
    if json {
        print_json(r)?;
    } else {
        for c in &r.checks {
            out!("{:<4} {:<9} {}", if c.ok { "ok" } else { "FAIL" }, c.name, clean(&c.detail));
            if let Some(f) = &c.repair {
                out!("{:<4} {:<9} repair: {}", "", "", clean(&f.to_string()));
            }
        }
    }
    if r.ok {
        return Ok(());
    }
    let failed: Vec<&str> = r.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    let e = Error::failed(format!("job {}: verification failed ({})", r.job, failed.join(", ")));
    Err(match r.repairs() {
        f if f.is_empty() => e,
        f => e.hint(f.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; then ")),
    })
}

/// The segments of a plan as they are: `3 × 16.00 MiB`, or `4 × 8.00 MiB + 2 × 16.00 MiB
/// + 1 × 4.00 MiB (4194304 bytes)` (a 200 MiB file was once shown as `1 × 256.00 MiB`).
fn segments_text(p: &crate::plan::Plan, ranged: bool) -> String {
    if p.segment_count == 0 {
        return "none (an empty object)".into();
    }
    let lengths: Box<dyn Iterator<Item = u64>> = if ranged {
        Box::new(p.cuts().map(|(_, len)| len))
    } else {
        Box::new((0..p.segment_count).map(|i| p.segment(i).1))
    };
    let mut runs: Vec<(u64, u64)> = vec![];
    for len in lengths {
        match runs.last_mut() {
            Some((l, n)) if *l == len => *n += 1,
            _ => runs.push((len, 1)),
        }
    }
    let last = runs.len() - 1;
    runs.iter()
        .enumerate()
        .map(|(k, (len, n))| {
            let exact = if k == last && *len < p.segment_size { format!(" ({len} bytes)") } else { String::new() };
            format!("{n} × {}{exact}", format_size(*len))
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The limits and plan summary for `--dry-run`.
fn describe_limits(l: &crate::swift::Limits) -> String {
    let slo = match &l.slo {
        Some(s) => {
            format!("SLO max_manifest_segments {}, max_manifest_size {}", s.max_manifest_segments, s.max_manifest_size)
        }
        None => "no SLO".into(),
    };
    format!(
        "max_file_size {} ({}), {slo}{}",
        l.max_file_size,
        format_size(l.max_file_size),
        if l.from_info { "" } else { " (Swift defaults: /info unavailable)" }
    )
}
