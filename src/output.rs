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
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|_| o.flush())
        .map_err(|e| {
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
