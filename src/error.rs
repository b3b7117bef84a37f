//! The one error type the library returns, classified by what the user can do
//! about it. The binary turns [`ErrorKind`] into the process exit code.

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
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// An I/O error on `what` (a path or an action), classified by its kind.
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
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
        let full = e.kind() == K::StorageFull;
        // EMFILE, ENFILE: a limit of this process or of the system, not bad data.
        let no_fds = matches!(e.raw_os_error(), Some(23 | 24));
        let mut err = Self::new(kind, format!("{what}: {e}"));
        err.source = Some(Box::new(e));
        if full {
            err.kind = ErrorKind::Resumable;
            return err.hint("free space on that file system, then run the same command again (or `k5up resume JOB`)");
        }
        if no_fds {
            err.kind = ErrorKind::Resumable;
            return err.hint(
                "raise the open-file limit (`ulimit -n 1024` or more), then run the same command again (or `k5up resume JOB`)",
            );
        }
        err
    }

    /// A journal that is damaged (its data fails sled's checks, or a record does not
    /// decode): the only failure that lets a run set the journal aside and rebuild it.
    pub fn damaged(msg: impl Into<String>) -> Self {
        let mut err = Self::failed(msg);
        err.source = Some(Box::new(Damaged));
        err
    }

    /// True for [`Error::damaged`]: the journal's content is bad, not the means of
    /// reading it (a lock held, too many open files, no permission, a full disk).
    pub fn is_damage(&self) -> bool {
        self.source.as_ref().is_some_and(|s| s.is::<Damaged>())
    }

    /// The server error underneath, with its status, X-Trans-Id, class and origin.
    pub fn swift(&self) -> Option<&crate::swift::SwiftError> {
        self.source.as_ref()?.downcast_ref()
    }

    /// The kind of the underlying I/O error, if this is one.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        self.source.as_ref()?.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// The mark of a damaged journal (see [`Error::damaged`]).
#[derive(Debug)]
struct Damaged;

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("damaged journal")
    }
}

impl std::error::Error for Damaged {}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
