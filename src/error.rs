//! The one error type. Each variant names the object that failed; `Display`
//! reads like err(3): lowercase, no final period, object first.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Exit codes, as documented in pfknock(8).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// sysexits' EX_UNAVAILABLE: no firewall on this system to load into
/// (neither pf nor nft(8)).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// sysexits' EX_CONFIG, what ntpd-rs and the BSD daemons use for a bad config.
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug)]
pub enum Error {
    /// A config file that cannot be read, parsed or checked.
    Config {
        file: PathBuf,
        line: usize,
        key: String,
        msg: String,
    },
    /// A config file that cannot be opened at all.
    ConfigFile { file: PathBuf, source: io::Error },
    /// A table request failed: `outcome` says what it means to pfknock,
    /// whatever errno the kernel of the day answered; `errno` (0 where
    /// there is none, as on nftables) gives the kernel's own words.
    Table {
        table: String,
        anchor: String,
        op: &'static str,
        outcome: Outcome,
        errno: i32,
    },
    /// The pf device could not be opened or a request failed on it.
    Device {
        path: String,
        op: &'static str,
        source: io::Error,
    },
    /// An external tool (pfctl, nft, conntrack) failed or could not run:
    /// `says` is what its words mean to pfknock, read once where it ran.
    Tool {
        tool: String,
        msg: String,
        says: ToolSays,
    },
    /// A command line that parses but asks for something the config forbids.
    Usage(String),
    /// Anything else, already worded as `object: reason`.
    Other(String),
    /// No firewall here to do it with (neither pf nor nft(8)), worded as
    /// `object: reason`.
    Unavailable(String),
    /// The reader of standard output went away (`pfknock show | head`):
    /// nothing to say, and exit as a tool killed by SIGPIPE would.
    StdoutClosed,
    /// An error the running daemon met doing a command's work, with the
    /// exit status the command would have had (see the control module).
    Relayed { msg: String, code: i32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a failed table request means, the same on every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The anchor (pf) or the table (nftables) is not loaded.
    MissingAnchor,
    /// The anchor is there but the table is not.
    MissingTable,
    /// The kernel refused: const table, securelevel, read-only device.
    NotPermitted,
    /// A kernel limit: memory, table entries, a set's size.
    KernelLimit,
    /// Anything else; the errno's words say what.
    Failed,
}

impl Outcome {
    /// The anchor or its table is gone: load it again.
    pub fn is_missing(self) -> bool {
        matches!(self, Outcome::MissingAnchor | Outcome::MissingTable)
    }

    /// pf's meaning of an errno from a table request (pf_table.c and the
    /// ioctl layer; FreeBSD answers a missing filter anchor with EINVAL on
    /// GETTSTATS, which the marshalling maps before it gets here).
    pub fn of_errno(errno: i32) -> Outcome {
        match errno {
            libc::ENOENT => Outcome::MissingAnchor,
            libc::ESRCH => Outcome::MissingTable,
            libc::EPERM | libc::EACCES => Outcome::NotPermitted,
            libc::ENOMEM | libc::ENFILE => Outcome::KernelLimit,
            _ => Outcome::Failed,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Outcome::MissingAnchor => "anchor or ruleset does not exist",
            Outcome::MissingTable => "table does not exist",
            Outcome::NotPermitted => "operation not permitted",
            Outcome::KernelLimit => "a kernel limit was reached",
            Outcome::Failed => "failed",
        }
    }
}

impl Error {
    /// A table error with pf's meaning of `errno`.
    pub fn table(table: &str, anchor: &str, op: &'static str, errno: i32) -> Error {
        Error::Table {
            table: table.to_owned(),
            anchor: anchor.to_owned(),
            op,
            outcome: Outcome::of_errno(errno),
            errno,
        }
    }

    /// What a table error means, if this is one.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Error::Table { outcome, .. } => Some(*outcome),
            _ => None,
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } | Error::ConfigFile { .. } => EXIT_CONFIG,
            Error::Usage(_) => EXIT_USAGE,
            Error::Unavailable(_) => EXIT_UNAVAILABLE,
            Error::StdoutClosed => 128 + libc::SIGPIPE,
            Error::Relayed { code, .. } => *code,
            _ => EXIT_FAIL,
        }
    }
}

/// What a failed tool's message means to pfknock. nft(8) and conntrack(8)
/// exit 1 whatever failed, so their words are the only signal; they are
/// read in one place (`ToolSays::of`, called by `tool::run`), and every
/// decision matches on this instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolSays {
    /// Nothing pfknock acts on.
    Failed,
    /// conntrack: no entry matched ("0 flow entries have been deleted").
    NothingMatched,
    /// nft: a set at its size (ENFILE's words, "Too many open files in
    /// system", which the kernel answers for a full set).
    SetFull,
}

impl ToolSays {
    pub fn of(msg: &str) -> ToolSays {
        if msg.contains("0 flow entries") {
            ToolSays::NothingMatched
        } else if msg.contains("Too many open files in system") {
            ToolSays::SetFull
        } else {
            ToolSays::Failed
        }
    }
}

/// pfctl's wording for the errnos a table request can return
/// (pfctl `pf_strerror` and `pfr_strerror`).
pub fn table_errno_words(errno: i32) -> String {
    match errno {
        libc::ESRCH => "table does not exist".into(),
        libc::ENOENT => "anchor or ruleset does not exist".into(),
        libc::EPERM => "operation not permitted (table is const, or securelevel)".into(),
        libc::EACCES => "permission denied (pf device opened read-only)".into(),
        // pf_ioctl.c answers ENODEV to a table request whose pfrio_esize is
        // not its own sizeof, and (FreeBSD) to a request it does not know:
        // a pfknock built for another pf, or a pf that dropped the DIOCR*
        // ioctls (docs/pf-kernel.md, FreeBSD's netlink).
        libc::ENODEV => {
            "element size (pfrio_esize) or request refused: this pfknock was built for \
                         another version of pf"
                .into()
        }
        libc::ENXIO => "pf not loaded (no such device)".into(),
        libc::EINVAL => {
            "invalid argument (too many addresses for one request? see net.pf.request_maxcount)"
                .into()
        }
        libc::ENOMEM => "out of memory (table entry limit reached?)".into(),
        e => lower_first(&io::Error::from_raw_os_error(e).to_string()),
    }
}

/// `io::Error` prints "No such file or directory (os error 2)"; err(3) prints
/// "No such file or directory". Keep the system's words, drop the code.
pub fn io_words(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn lower_first(s: &str) -> String {
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config {
                file,
                line,
                key,
                msg,
            } => {
                write!(f, "{}", file.display())?;
                if *line > 0 {
                    write!(f, ":{line}")?;
                }
                if !key.is_empty() {
                    write!(f, ": {key}")?;
                }
                write!(f, ": {msg}")
            }
            Error::ConfigFile { file, source } => {
                write!(f, "{}: {}", file.display(), io_words(source))
            }
            Error::Table {
                table,
                anchor,
                op,
                outcome,
                errno,
            } => {
                write!(f, "table <{table}>")?;
                if !anchor.is_empty() {
                    write!(f, " in anchor {anchor}")?;
                }
                if *errno == 0 {
                    write!(f, ": {op}: {}", outcome.words())
                } else {
                    write!(f, ": {op}: {}", table_errno_words(*errno))
                }
            }
            Error::Device { path, op, source } => {
                write!(f, "{path}: {op}: {}", io_words(source))
            }
            Error::Tool { tool, msg, .. } => write!(f, "{tool}: {msg}"),
            Error::StdoutClosed => write!(f, "stdout: broken pipe"),
            Error::Usage(m)
            | Error::Other(m)
            | Error::Unavailable(m)
            | Error::Relayed { msg: m, .. } => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_error_reads_like_pfctl() {
        let e = Error::table("ssh", "pfknock", "DIOCRGETASTATS", libc::ESRCH);
        assert_eq!(e.outcome(), Some(Outcome::MissingTable));
        assert_eq!(
            e.to_string(),
            "table <ssh> in anchor pfknock: DIOCRGETASTATS: table does not exist"
        );
        assert_eq!(e.exit_code(), EXIT_FAIL);
    }

    #[test]
    fn a_tools_words_are_read_once_into_what_they_mean() {
        // nft's, for `list table` of a table that is not there: nothing
        // pfknock decides on.
        let said = "Error: No such file or directory; list table inet pfknock; ^^^^^^^";
        assert_eq!(ToolSays::of(said), ToolSays::Failed);
        // conntrack's, when no entry matched.
        let said = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.";
        assert_eq!(ToolSays::of(said), ToolSays::NothingMatched);
        let said = "Error: Could not process rule: Too many open files in system";
        assert_eq!(ToolSays::of(said), ToolSays::SetFull);
        assert_eq!(ToolSays::of("Error: syntax error"), ToolSays::Failed);
    }

    #[test]
    fn config_error_names_file_line_key() {
        let e = Error::Config {
            file: "/usr/local/etc/pfknock.toml".into(),
            line: 12,
            key: "service.rate".into(),
            msg: "expected N/S, got \"5\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "/usr/local/etc/pfknock.toml:12: service.rate: expected N/S, got \"5\""
        );
        assert_eq!(e.exit_code(), EXIT_CONFIG);
    }

    #[test]
    fn io_words_drop_the_code() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_words(&e), "No such file or directory");
    }
}
