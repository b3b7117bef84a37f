//! Parsing and printing of byte sizes (`512MiB`, `5G`) and durations (`90s`, `6h`).

use std::time::Duration;

/// Parses a byte size: a number with an optional unit `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case-insensitive). Decimal units (`KB`) are powers
/// of 1000, binary units (`KiB`, `K`) powers of 1024.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("`{s}` is not a size (expected e.g. 512MiB, 1GiB, 4096)"));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("`{s}`: unknown size unit `{other}`")),
    };
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a size"))?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Formats a byte count with a binary unit, e.g. `1.50 GiB`.
pub(crate) fn format_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.2} {}", UNITS[i]) }
}

/// Parses a duration: `90s`, `15m`, `6h`, `2d`, `250ms`, `1h 30m`, `5 hours` (jiff's
/// friendly format), or a bare number of seconds. Days are 24 hours. Values too large
/// for the clock are errors, never a panic.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration (e.g. 30s, 15m, 6h)");
    if t.starts_with('-') {
        return Err(format!("`{s}` is negative"));
    }
    let text = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        format!("{t}s")
    } else {
        t.to_string()
    };
    let span: jiff::Span = text.parse().map_err(|_| bad())?;
    let d =
        span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|_| format!("`{s}` is out of range"))?;
    Duration::try_from(d).map_err(|_| format!("`{s}` is out of range"))
}

/// Parses a duration that must be at least `min` (a zero stall timeout, say, would
/// fail every request).
pub(crate) fn parse_duration_at_least(s: &str, min: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min {
        return Err(format!("`{s}` is too short: at least {}", format_duration(min)));
    }
    Ok(d)
}

/// Formats a duration briefly: `1s`, `1m 30s`, `250ms`.
pub(crate) fn format_duration(d: Duration) -> String {
    match jiff::SignedDuration::try_from(d) {
        Ok(sd) => format!("{sd:#}"),
        Err(_) => format!("{d:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size(10), "10 B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(2 * 86400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        // Once a panic (Duration::from_secs_f64).
        assert!(parse_duration("300000000000000000d").is_err());
        assert!(parse_duration("1e400").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration_at_least("0s", Duration::from_secs(1)).is_err());
        assert!(parse_duration_at_least("1ms", Duration::from_secs(1)).is_err());
        assert!(parse_duration_at_least("2s", Duration::from_secs(1)).is_ok());
    }

    /// Property-style: no input of these shapes panics.
    #[test]
    fn parsers_never_panic() {
        let nums = [
            "0",
            "1",
            "1.5",
            "18446744073709551615",
            "18446744073709551616",
            "1e30",
            "NaN",
            "inf",
            ".",
            "",
            "99999999999999999999999",
        ];
        let units = ["", "B", "KiB", "kb", "M", "GiB", "T", "PiB", "s", "ms", "m", "h", "d", "x", " ", "\u{e9}"];
        for n in nums {
            for u in units {
                let s = format!("{n}{u}");
                let _ = parse_size(&s);
                let _ = parse_duration(&s);
            }
        }
        for n in [0u64, 1, 1023, 1024, 1 << 20, (1 << 20) + 1, 5 << 30, u64::MAX] {
            let _ = format_size(n);
        }
    }
}
