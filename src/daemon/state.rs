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

use super::machine::EachKnown;
pub use super::machine::Known;

/// The state file of a pidfile.
pub fn path_of(pidfile: &Path) -> PathBuf {
    let mut p = pidfile.as_os_str().to_owned();
    p.push(".state");
    PathBuf::from(p)
}

/// Keep `known` for the next start. Best effort: without it the next
/// start only says that it does not know. Written a buffer at a time (at a
/// million lines the text is some 50 MB).
pub fn write(path: &Path, known: &Known) {
    write_with(path, |w| {
        for (t, hosts) in known.tables() {
            // In address order (`Hosts`): the next start reads them in order.
            for (n, since) in hosts {
                writeln!(w, "{t}\t{n}\t{since}")?;
            }
        }
        Ok(())
    });
}

/// `write`, each host handed to the writer as `each` gives it (the
/// daemon's own book, `Daemon::write_record`), in the order `write`
/// keeps: no copy of a million beside the book.
fn write_each(
    path: &Path,
    each: impl FnOnce(&mut EachKnown<'_, std::io::Error>) -> std::io::Result<()>,
) {
    write_with(path, |w| {
        each(&mut |t, n, since| writeln!(w, "{t}\t{n}\t{since}"))
    });
}

/// Write `text` to `path` as a new file of mode 0600, then rename it into
/// place: a reader never sees half of it. Best effort.
pub fn write_text(path: &Path, text: &str) {
    write_with(path, |w| w.write_all(text.as_bytes()));
}

/// `write_text`, the text written by `body`.
fn write_with(path: &Path, body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
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
    let Ok(f) = f else {
        return;
    };
    let mut w = std::io::BufWriter::new(f);
    if body(&mut w).is_ok() && w.flush().is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Take what the last daemon kept: `None` when it kept nothing (first
/// start, a crash, a reboot) or its file is not to be trusted.
pub fn take(path: &Path) -> Option<Known> {
    use std::io::BufRead;
    // A million authorizations take some 50 MB.
    let f = super::notes::open_trusted_own(path, 256 << 20);
    let _ = std::fs::remove_file(path);
    let mut f = std::io::BufReader::new(f?);
    // Each table's hosts as they come (in address order, as `write` puts
    // them), made into its map once all are read: a map built from
    // sorted entries has full nodes, where one filled in order has half
    // full ones (at a million, 27 against some 50 MB).
    let mut known = Known::new();
    let mut table = String::new();
    let mut hosts: Vec<(Net, i64)> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        // A file that is not text is not believed.
        match f.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let mut fields = text.strip_suffix('\r').unwrap_or(text).split('\t');
        let (Some(t), Some(n), Some(s), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(n), Ok(s)) = (n.parse::<Net>(), s.parse::<i64>()) else {
            continue;
        };
        if t != table {
            known.add_hosts(&table, std::mem::take(&mut hosts));
            t.clone_into(&mut table);
        }
        hosts.push((n, s));
    }
    known.add_hosts(&table, hosts);
    Some(known)
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Keep every authorization the daemon knows of in `path`, for the
    /// next start: what `write` would of `snapshot`, without it.
    pub fn write_record(&self, path: &Path) {
        let cx = super::events::cx!(self);
        write_each(path, |f| self.machine.each_known(&cx, f));
    }

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
                self.machine.compared();
                let cx = super::events::cx!(self);
                super::machine::Machine::no_record(self.machine.booked(&cx))
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

    /// A directory of the test's own, empty, and the state file of a
    /// pidfile in it.
    fn state_in(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pfknock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = path_of(&dir.join("pfknock.pid"));
        (dir, p)
    }

    #[test]
    fn kept_and_taken_once() {
        let (dir, p) = state_in("state");
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

    /// A record read a line at a time, each table's hosts made into its
    /// map once read, is what the same lines give one at a time: lines
    /// that are not a record's passed over, a table whose lines are apart
    /// whole, of a host given twice the last; a file that is not text is
    /// not believed.
    #[test]
    fn a_record_read_a_line_at_a_time_is_each_line_taken_in_order() {
        let (dir, p) = state_in("lines");
        let lines = [
            "<a> in anchor pfknock\t198.18.0.9\t5",
            "<a> in anchor pfknock\t198.18.0.7\t6",
            "not a record",
            "<b> in anchor pfknock\tfd00::1\t7\r",
            "<a> in anchor pfknock\t198.18.0.9\t8",
            "<a> in anchor pfknock\t198.18.0.0/24\t9",
            "<a> in anchor pfknock\tnowhere\t9",
            "<b> in anchor pfknock\tfd00::2\t10\textra",
            "",
            "<b> in anchor pfknock\tfd00::3\t11",
        ];
        let mut want = Known::new();
        for l in lines {
            let f: Vec<&str> = l.trim_end_matches('\r').split('\t').collect();
            if let [t, n, s] = f[..]
                && let (Ok(n), Ok(s)) = (n.parse(), s.parse())
            {
                want.insert((t.to_owned(), n), s);
            }
        }
        assert_eq!(want.len(), 5);
        write_text(&p, &(lines.join("\n") + "\n"));
        assert_eq!(take(&p), Some(want.clone()));
        // Without the last newline, the same.
        write_text(&p, &lines.join("\n"));
        assert_eq!(take(&p), Some(want));
        // Not text.
        let mut bad = lines.join("\n").into_bytes();
        bad.extend_from_slice(b"\n<a>\t\xff\t1\n");
        std::fs::write(&p, &bad).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(take(&p), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
