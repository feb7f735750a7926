//! What the daemon knew when it stopped, kept for the next start, so that
//! knocks and expiries that happened while no daemon ran are logged, as
//! such, once it is back (`Daemon::reconcile`).
//!
//! A root-only file beside the pidfile (`PIDFILE.state`), of lines
//! `table<TAB>address<TAB>since`, written at a clean stop (a new file
//! renamed over the old one) and removed once read at the next start.
//! It lives in /var/run (or /run), which the system empties at boot, as a
//! reboot empties the kernel's tables. After a crash there is none, and
//! the daemon says it does not know what happened meanwhile. A file it
//! cannot trust (not a regular file, not its user's, writable by others,
//! too large) is not believed.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Daemon, Loader, Log};
use crate::name::Net;
use crate::tables::{Entry, TableRef, Tables};

pub use super::machine::Known;

/// The state file of a pidfile.
pub fn path_of(pidfile: &Path) -> PathBuf {
    let mut p = pidfile.as_os_str().to_owned();
    p.push(".state");
    PathBuf::from(p)
}

/// Keep `known` for the next start. Best effort: without it the next
/// start only says that it does not know.
pub fn write(path: &Path, known: &Known) {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (t, hosts) in known.tables() {
        // In address order (`Hosts`): the next start reads them in order.
        for (n, since) in hosts {
            let _ = writeln!(text, "{t}\t{n}\t{since}");
        }
    }
    write_text(path, &text);
}

/// Write `text` to `path` as a new file of mode 0600, then rename it into
/// place: a reader never sees half of it. Best effort.
pub fn write_text(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp);
    if let Ok(mut f) = f
        && f.write_all(text.as_bytes()).is_ok()
    {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Take what the last daemon kept: `None` when it kept nothing (first
/// start, a crash, a reboot) or its file is not to be trusted.
pub fn take(path: &Path) -> Option<Known> {
    // A million authorizations take some 50 MB.
    let text = super::notes::read_trusted_own(path, 256 << 20);
    let _ = std::fs::remove_file(path);
    let text = text?;
    let mut known = Known::new();
    for line in text.lines() {
        let mut f = line.split('\t');
        let (Some(t), Some(n), Some(s), None) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(n), Ok(s)) = (n.parse::<Net>(), s.parse::<i64>()) else {
            continue;
        };
        known.insert_at(t, n, s);
    }
    Some(known)
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Every authorization the daemon knows of, as the state file keeps it.
    pub fn snapshot(&self) -> Known {
        let cx = super::events::cx!(self);
        self.machine.snapshot(&cx)
    }

    /// At start, once the tables have been read: log what changed while
    /// no daemon ran, against what the last one kept (`prev`), each line
    /// ending "while the daemon was down" (the machine decides:
    /// `Machine::reconcile`; with kernel events `Machine::compare`, which
    /// walks the book a part at a time).
    pub fn reconcile(&mut self, prev: Option<Known>, now: i64) {
        let acts = match prev {
            None if !self.machine.polls() => {
                super::machine::Machine::no_record(self.machine.booked())
            }
            // The book is what the kernel holds: compared in parts.
            Some(prev) if !self.machine.polls() => {
                let mut out = Vec::new();
                let cx = super::events::cx!(self);
                self.machine.compare(&cx, prev, now, &mut out);
                out
            }
            prev => {
                let cur = self.present(now);
                let cx = super::events::cx!(self);
                self.machine.reconcile(&cx, prev, &cur, now)
            }
        };
        self.carry_out(acts, super::events::ms(now));
    }

    /// What the kernel holds now (polling): a listing of each authorized
    /// table and intake at `now` (seconds), without expiring
    /// (`Machine::at_start`).
    fn present(&mut self, now: i64) -> Known {
        let listed: Vec<(TableRef, Vec<Entry>)> = (self.machine.start_tables().into_iter())
            .filter_map(|t| Some((t.clone(), self.tables.entries(&t).ok()?)))
            .collect();
        let cx = super::events::cx!(self);
        self.machine.at_start(&cx, listed, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_and_taken_once() {
        let dir = std::env::temp_dir().join(format!("pfknock-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = path_of(&dir.join("pfknock.pid"));
        assert!(p.ends_with("pfknock.pid.state"));
        assert_eq!(take(&p), None, "nothing kept: not known");
        let mut k = Known::new();
        k.insert(
            (
                "<ssh> in anchor pfknock".into(),
                "198.18.0.7".parse().unwrap(),
            ),
            100,
        );
        k.insert(
            ("<ssh> in anchor pfknock".into(), "fd00::7".parse().unwrap()),
            101,
        );
        write(&p, &k);
        assert_eq!(take(&p), Some(k.clone()));
        assert_eq!(take(&p), None, "taken once");
        // Kept with nothing in it: known to be empty.
        write(&p, &Known::new());
        assert_eq!(take(&p), Some(Known::new()));
        // A file others may write is not believed.
        write(&p, &k);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(take(&p), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
