//! What the commands print: human text on stdout, or JSON with --json.

use k5up::engine::{Planned, VerifyReport, describe_limits};
use k5up::journal::Root;
use k5up::status::{self, StatusView};
use k5up::units::format_size;
use k5up::{Error, Result};

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::failed(e.to_string()))?;
    println!("{s}");
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
            Err(e) => eprintln!("k5up: job {id}: {e}"),
        }
    }
    if json {
        return print_json(&views);
    }
    if views.is_empty() {
        println!("no jobs in {}", root.path().display());
        return Ok(());
    }
    println!("{:<10} {:<10} {:>8} {:>12}  TARGET", "JOB", "PHASE", "DONE", "SIZE");
    for v in &views {
        let pct = if v.bytes_total > 0 { v.bytes_confirmed as f64 * 100.0 / v.bytes_total as f64 } else { 100.0 };
        println!(
            "{:<10} {:<10} {:>7.1}% {:>12}  {}/{}{}",
            v.job,
            v.phase,
            pct,
            format_size(v.bytes_total),
            v.container,
            v.object,
            if v.running { "  (running)" } else { "" }
        );
    }
    Ok(())
}

fn print_one(v: &StatusView) {
    let running = match (v.running, v.pid) {
        (true, Some(p)) => format!(" (running, pid {p})"),
        (true, None) => " (running)".into(),
        _ => String::new(),
    };
    println!("job {}  {}{running}", v.job, v.phase);
    println!("  file       {}", v.file);
    println!(
        "  target     {}/{} ({}, segments in {})",
        v.container,
        v.object,
        v.manifest.to_uppercase(),
        v.segment_container
    );
    println!(
        "  segments   {} of {} confirmed, {} each",
        v.segments_confirmed,
        v.segments_total,
        format_size(v.segment_size)
    );
    println!("  bytes      {} of {} confirmed", format_size(v.bytes_confirmed), format_size(v.bytes_total));
    println!("  sent       {} (wasted {})", format_size(v.bytes_sent), format_size(v.bytes_wasted));
    if let Some(e) = &v.manifest_etag {
        println!("  etag       {e}");
    }
    for (a, d) in &v.digests {
        println!("  {a:<10} {d}");
    }
    if let Some(i) = &v.import {
        let pct = i.progress.map(|p| format!(" {p}%")).unwrap_or_default();
        let iid = i.import_id.as_deref().map(|x| format!(", import {x}")).unwrap_or_default();
        println!("  import     {} image {}{iid}: {}{pct} ({})", i.kind, i.id, i.status, i.outcome);
        if let Some(m) = &i.message {
            println!("  import msg {m}");
        }
    }
    if let Some(e) = &v.last_error {
        println!("  last error {e}");
    }
}

/// After `upload`/`resume`.
pub(super) fn finished(v: StatusView) -> Result<()> {
    println!(
        "job {}: {}/{} is complete: {} in {} segment(s), ETag {}; sent {} in all",
        v.job,
        v.container,
        v.object,
        format_size(v.bytes_total),
        v.segments_total,
        v.manifest_etag.as_deref().unwrap_or("?"),
        format_size(v.bytes_sent)
    );
    for (a, d) in &v.digests {
        println!("  {a} {d}");
    }
    if let Some(i) = &v.import {
        println!("job {}: imported into {} as image {} ({})", v.job, i.kind, i.id, i.status);
    }
    Ok(())
}

/// `upload --dry-run`.
pub(super) fn dry_run(p: &Planned) {
    let j = &p.job;
    println!("job            {}{}", j.id, if p.existing { " (exists: running upload continues it)" } else { "" });
    println!("file           {} ({})", j.file, format_size(j.plan.file_size));
    println!("target         {}/{}", j.container, j.object);
    println!("storage        {}", j.storage_url);
    println!(
        "segments       {} × {} ({} bytes), in {}",
        j.plan.segment_count,
        format_size(j.plan.segment_size),
        j.plan.segment_size,
        j.segment_container
    );
    let levels = if p.manifest_levels > 1 { format!(", nested {} levels", p.manifest_levels) } else { String::new() };
    println!("manifest       {}{levels}", j.plan.manifest.as_str().to_uppercase());
    println!("server limits  {}", describe_limits(&j.limits));
    if let Some(i) = &j.import {
        let os = i.os_type.as_deref().map(|o| format!(", os_type {o}")).unwrap_or_default();
        println!("import         {} as `{}` ({}{os})", i.kind.as_str(), i.image_name, i.disk_format);
    }
    if !j.digests.is_empty() {
        println!("digests        {}", j.digests.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "));
    }
}

/// `verify`.
pub(super) fn verify(r: &VerifyReport, json: bool) -> Result<()> {
    if json {
        print_json(r)?;
    } else {
        for c in &r.checks {
            println!("{:<4} {:<9} {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
        }
    }
    if r.ok { Ok(()) } else { Err(Error::failed(format!("job {}: verification failed", r.job))) }
}
