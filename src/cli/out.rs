//! Writing to the terminal: lines to stdout that end the process quietly when the
//! reader has gone (`k5up jobs | head -1`, as ripgrep does), and names with their
//! control characters escaped so that a newline or an escape sequence in a name
//! cannot forge or break a line of output.

use std::borrow::Cow;
use std::io::Write;

/// Prints one line to stdout; a closed pipe ends the process with success.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out::line(format_args!($($t)*)) };
}
pub(crate) use out;

/// Writes `args` and a newline to stdout. A broken pipe means the reader has what it
/// wanted: exit 0 at once. Any other failure to write is reported and exits 1.
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|_| o.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("k5up: error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `s` with every control character escaped (`\n`, `\t`, `\u{1b}`, ...).
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if ch.is_control() {
            o.extend(ch.escape_default());
        } else {
            o.push(ch);
        }
    }
    Cow::Owned(o)
}

/// A log line (one formatted event) with the control characters inside it escaped:
/// its final newline stays, and with `ansi` the escape character of colours stays.
pub(crate) fn clean_log(buf: &[u8], ansi: bool) -> Cow<'_, [u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let keep = |b: u8| b == b'\t' || (ansi && b == 0x1b);
    if !body.iter().any(|&b| (b < 0x20 || b == 0x7f) && !keep(b)) {
        return Cow::Borrowed(buf);
    }
    let mut o = Vec::with_capacity(buf.len() + 8);
    for &b in body {
        if (b < 0x20 || b == 0x7f) && !keep(b) {
            o.extend(std::ascii::escape_default(b));
        } else {
            o.push(b);
        }
    }
    if body.len() < buf.len() {
        o.push(b'\n');
    }
    Cow::Owned(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain ü 日本"), "plain ü 日本");
        assert_eq!(clean("new\nline"), "new\\nline");
        assert_eq!(clean("esc\u{1b}[31m"), "esc\\u{1b}[31m");
        assert_eq!(&*clean_log(b"a\nb\n", false), b"a\\nb\n");
        assert_eq!(&*clean_log(b"\x1b[32mINFO\x1b[0m x\ry\n", true), b"\x1b[32mINFO\x1b[0m x\\ry\n");
        assert_eq!(&*clean_log(b"\x1b[31m\n", false), b"\\x1b[31m\n");
    }
}
