//! What pfknock writes for people: standard output that reports its
//! errors, and standard error that never panics.
#![forbid(unsafe_code)]

use crate::error::{Error, Result, io_words};

/// Write to standard output; a full stdout is an error in words
/// (`pfknock: stdout: No space left on device`, exit 1), not a panic; a
/// reader that went away ends the command quietly, with the status of a
/// SIGPIPE death (141). (A
/// stdout closed before start is /dev/null: Rust's runtime reopens closed
/// descriptors 0 to 2 there.)
pub fn out(text: &str) -> Result<()> {
    to_stdout(|w| w.write_all(text.as_bytes()))
}

/// `out`, for output written piece by piece through a buffer (`show` of a
/// large set), with the same errors.
pub fn to_stdout<T>(f: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<T>) -> Result<T> {
    use std::io::Write;
    let mut o = std::io::BufWriter::new(std::io::stdout().lock());
    f(&mut o).and_then(|t| o.flush().map(|()| t)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Error::StdoutClosed
        } else {
            Error::Other(format!("stdout: {}", io_words(&e)))
        }
    })
}

/// A line on standard error; if stderr is closed or full there is no one
/// to tell, so the line is dropped rather than panicking.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
