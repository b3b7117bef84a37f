//! The one error type the library returns, classified by what the user can do
//! about it. The binary turns [`ErrorKind`] into the process exit code.

use std::borrow::Cow;
use std::fmt;

/// What kind of failure this is, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad usage or bad input (a missing file, an invalid name, wrong credentials): exit 2.
    BadInput,
    /// Transient failures outlasted the retry budget, or the run was interrupted:
    /// the job is intact and `k5up resume` continues it. Exit 75.
    Resumable,
    /// Anything else (a server refusal, a damaged journal, a changed file): exit 1.
    Failed,
}

impl ErrorKind {
    /// The process exit code for this kind (documented in the README and `--help`).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadInput => 2,
            ErrorKind::Resumable => 75,
            ErrorKind::Failed => 1,
        }
    }
}

/// An error with its kind, a one-line message and an optional hint of what to do.
#[derive(Debug)]
pub struct Error {
    /// How the user should react, and the exit code.
    pub kind: ErrorKind,
    /// What failed, on what (job, segment, server's X-Trans-Id).
    pub msg: String,
    /// What the user can do about it, when there is something.
    pub hint: Option<String>,
    /// The underlying error (an I/O error, say), kept so callers decide on its kind,
    /// never on the message text.
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The library's result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), hint: None, source: None }
    }
    /// Bad usage or input (exit 2).
    pub fn input(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, msg)
    }
    /// A failure that `k5up resume` can continue from (exit 75).
    pub fn resumable(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Resumable, msg)
    }
    /// Any other failure (exit 1).
    pub fn failed(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, msg)
    }
    /// Adds (or replaces) the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
    /// Keeps `cause` as the source, so that callers can ask it (its I/O kind, OS
    /// error, HTTP status), without changing this error's kind or message.
    pub fn caused_by(mut self, cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        self.source = Some(cause.into());
        self
    }

    /// An I/O error on `what` (a path or an action), classified by its kind.
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Self::io_within(what, e)
    }

    /// An error whose cause is `cause`, classified (as [`Error::io`]) by the first I/O
    /// error in its chain and said with it: for a library's error that carries the
    /// I/O error (the journal's database, say), kept whole as the source.
    pub fn io_within(what: impl fmt::Display, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        let cause: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(cause);
        let io = chain(cause.as_ref()).find_map(|c| c.downcast_ref::<std::io::Error>());
        let (kind, hint) = io.map_or((ErrorKind::Failed, None), io_class);
        let msg = match io {
            Some(io) => format!("{what}: {io}"),
            None => format!("{what}: {cause}"),
        };
        let err = Self::new(kind, msg).caused_by(cause);
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }

    /// A journal that is damaged (its data fails sled's checks, or a record does not
    /// decode): the only failure that lets a run set the journal aside and rebuild it.
    pub fn damaged(msg: impl Into<String>) -> Self {
        Self::failed(msg).caused_by(Damaged(None))
    }

    /// [`Error::damaged`], with what found the damage (the database's own error, a
    /// record's decoding error) kept underneath.
    pub fn damaged_by(msg: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::failed(msg).caused_by(Damaged(Some(Box::new(cause))))
    }

    /// True for [`Error::damaged`]: the journal's content is bad, not the means of
    /// reading it (a lock held, too many open files, no permission, a full disk).
    pub fn is_damage(&self) -> bool {
        self.cause::<Damaged>().is_some()
    }

    /// The errors underneath this one, its source first, looking inside the I/O
    /// errors that carry another error too.
    pub fn causes(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        self.source.as_deref().into_iter().flat_map(|s| chain(s as &(dyn std::error::Error + 'static)))
    }

    /// The first error of type `T` underneath this one (a server's error with its
    /// status and X-Trans-Id, an I/O error), wherever it sits in the chain.
    pub fn cause<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.causes().find_map(|c| c.downcast_ref::<T>())
    }

    /// The kind of the first I/O error underneath, if there is one.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        self.cause::<std::io::Error>().map(std::io::Error::kind)
    }

    /// The OS error number underneath (`EMFILE`, `ENOSPC`...), if there is one.
    pub fn os_error(&self) -> Option<i32> {
        self.causes().find_map(|c| c.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error))
    }

    /// The message and its hint as the user reads them, each part passed through
    /// `part` first (the CLI escapes control characters there): the one rendering of
    /// an error; [`fmt::Display`] is this with the parts as they are. The hint goes
    /// on a line of its own (`\n  hint: ...`); with `{:#}`, in parentheses after the
    /// message, on one line.
    pub fn render(&self, part: fn(&str) -> Cow<'_, str>) -> Rendered<'_> {
        Rendered { err: self, part }
    }
}

/// The class of an I/O error, and what the user can do about it when that is clear.
fn io_class(e: &std::io::Error) -> (ErrorKind, Option<&'static str>) {
    use std::io::ErrorKind as K;
    if e.kind() == K::StorageFull {
        let hint = "free space on that file system, then run the same command again (or `k5up resume JOB`)";
        return (ErrorKind::Resumable, Some(hint));
    }
    // EMFILE, ENFILE: a limit of this process or of the system, not bad data.
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        let hint = "raise the open-file limit (`ulimit -n 1024` or more), then run the same command again (or `k5up resume JOB`)";
        return (ErrorKind::Resumable, Some(hint));
    }
    let kind = match e.kind() {
        K::NotFound
        | K::PermissionDenied
        | K::IsADirectory
        | K::NotADirectory
        | K::ReadOnlyFilesystem
        | K::InvalidInput => ErrorKind::BadInput,
        // ELOOP: a symlink loop is a bad path, not a failure of the machine.
        _ if e.raw_os_error() == Some(40) => ErrorKind::BadInput,
        _ => ErrorKind::Failed,
    };
    (kind, None)
}

/// The errors of `e`'s chain, `e` first, looking inside the I/O errors that carry
/// another error too (an `io::Error`'s own `source` skips the error it carries:
/// rustls's errors, tokio-rustls's, travel that way).
pub(crate) fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |s| match s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
        None => s.source(),
    })
}

/// An [`Error`] as the user reads it (see [`Error::render`]).
pub struct Rendered<'a> {
    err: &'a Error,
    part: fn(&str) -> Cow<'_, str>,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.part)(&self.err.msg))?;
        match &self.err.hint {
            Some(h) if f.alternate() => write!(f, " ({})", (self.part)(h)),
            Some(h) => write!(f, "\n  hint: {}", (self.part)(h)),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn as_is(s: &str) -> Cow<'_, str> {
            Cow::Borrowed(s)
        }
        fmt::Display::fmt(&self.render(as_is), f)
    }
}

/// The mark of a damaged journal (see [`Error::damaged`]), over what found it.
#[derive(Debug)]
struct Damaged(Option<Box<dyn std::error::Error + Send + Sync + 'static>>);

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("damaged journal")
    }
}

impl std::error::Error for Damaged {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_asked_by_value_through_the_whole_chain() {
        let e = Error::io_within("cannot use x", Outer(std::io::Error::from_raw_os_error(24)));
        assert_eq!((e.kind, e.os_error()), (ErrorKind::Resumable, Some(24)));
        assert_eq!(e.msg, "cannot use x: Too many open files (os error 24)");
        assert!(e.hint.as_deref().unwrap().contains("ulimit -n"));
        assert!(e.cause::<Outer>().is_some());
        // Under another error, and inside an I/O error that carries one.
        let wrapped =
            std::io::Error::other(Error::failed("inner").caused_by(Outer(std::io::ErrorKind::NotFound.into())));
        let e = Error::failed("outer").caused_by(wrapped);
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::Other), "the first I/O error");
        assert!(e.cause::<Outer>().is_some_and(|o| o.0.kind() == std::io::ErrorKind::NotFound));
        assert_eq!(e.os_error(), None);
        assert!(!e.is_damage() && Error::failed("x").caused_by(Error::damaged("y")).is_damage());
        let e = Error::damaged_by("d", Outer(std::io::Error::from_raw_os_error(5)));
        assert!(e.is_damage() && e.os_error() == Some(5));
        // A full disk keeps its kind: resumable.
        let e = Error::io("w", std::io::ErrorKind::StorageFull.into());
        assert_eq!((e.kind, e.io_kind()), (ErrorKind::Resumable, Some(std::io::ErrorKind::StorageFull)));
    }

    #[test]
    fn message_and_hint_are_rendered_in_one_place() {
        let e = Error::input("bad\u{1b}name").hint("do\nthis");
        assert_eq!(e.to_string(), "bad\u{1b}name\n  hint: do\nthis");
        fn esc(s: &str) -> Cow<'_, str> {
            Cow::Owned(s.escape_default().to_string())
        }
        assert_eq!(e.render(esc).to_string(), "bad\\u{1b}name\n  hint: do\\nthis");
        assert_eq!(format!("{e:#}"), "bad\u{1b}name (do\nthis)");
        assert_eq!(Error::input("m").to_string(), "m");
    }
}
