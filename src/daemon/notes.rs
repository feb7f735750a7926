//! Removals made by pfknock's own commands (`revoke`, `expire`, `flush`),
//! noted for a running daemon so that it does not log them a second time.
//! pf tells no one who deleted a table entry; the command has logged it
//! already ("revoked ... by pfknock revoke"), and without a note the
//! daemon's next poll would log it again as "removed". (On nftables the
//! kernel names the committing process; see `events`.)
//!
//! The note is a root-only file of lines `anchor<TAB>table<TAB>address`,
//! `*` for every address of the table, written before the deletion. The
//! daemon takes the file at each poll (rename, then read) and keeps each
//! note for `KEEP` seconds or until the entry is seen gone, whichever
//! comes first. A file it cannot trust (not a regular file, not owned by
//! the daemon's user, writable by others, too large) is removed unread.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::name::Net;
use crate::tables::TableRef;

/// Where notes go when nothing else is said.
pub const PATH: &str = "/var/run/pfknock.removed";
pub use super::machine::KEEP;
/// The largest notes file read.
const MAX: u64 = 1 << 20;

/// Note that `nets` (all of the table's entries when `None`) are about to be
/// deleted from `t` by a command. Best effort: a note that cannot be written
/// only means the daemon logs the deletion as "removed".
pub fn note(path: &Path, t: &TableRef, nets: Option<&[Net]>) {
    let mut text = String::new();
    let anchor = t.anchor.as_str();
    match nets {
        None => text.push_str(&format!("{anchor}\t{}\t*\n", t.name)),
        Some(ns) => {
            for n in ns {
                text.push_str(&format!("{anchor}\t{}\t{n}\n", t.name));
            }
        }
    }
    if text.len() as u64 > MAX {
        text = format!("{anchor}\t{}\t*\n", t.name);
    }
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    if let Ok(mut f) = f {
        // One write: appends of up to a page do not interleave.
        let _ = f.write_all(text.as_bytes());
    }
}

/// The notes file of a daemon. What it holds is the machine's
/// (`machine::Claims`): this only takes the file.
#[derive(Debug)]
pub struct Notes {
    path: PathBuf,
}

impl Notes {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Notes { path: path.into() }
    }

    /// Remove the file: notes left by commands run while no daemon was
    /// watching.
    pub fn clear(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// What commands noted since the last call (rename, then read; a file
    /// that cannot be trusted is removed unread).
    pub fn take(&mut self) -> String {
        let mut taking = self.path.clone().into_os_string();
        taking.push(".taking");
        let taking = PathBuf::from(taking);
        if std::fs::rename(&self.path, &taking).is_err() {
            return String::new();
        }
        let text = read_own(&taking);
        let _ = std::fs::remove_file(&taking);
        text
    }
}

/// The file's text if it is a regular file owned by this process's user,
/// not writable by group or others, and at most `max` bytes; `None` if it
/// is missing or not to be trusted.
pub(super) fn read_trusted_own(path: &Path, max: u64) -> Option<String> {
    let mut s = String::new();
    open_trusted_own(path, max)?.read_to_string(&mut s).ok()?;
    Some(s)
}

/// `read_trusted_own`'s file, open, to be read at most `max` bytes of it
/// (a state file of a million lines is read a line at a time).
pub(super) fn open_trusted_own(path: &Path, max: u64) -> Option<std::io::Take<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.file_type().is_file()
        || m.uid() != crate::sys_unix::euid()
        || m.mode() & 0o022 != 0
        || m.len() > max
    {
        return None;
    }
    Some(f.take(max))
}

/// `read_trusted_own`, or nothing.
fn read_own(path: &Path) -> String {
    read_trusted_own(path, MAX).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{AnchorName, TableName};

    fn t(name: &str) -> TableRef {
        TableRef {
            anchor: AnchorName::new("pfknock").unwrap(),
            name: TableName::new(name).unwrap(),
        }
    }

    #[test]
    fn notes_are_taken_once_and_only_from_a_trusted_file() {
        let dir = std::env::temp_dir().join(format!("pfknock-notes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("removed");
        let a: Net = "198.18.0.7".parse().unwrap();
        note(&p, &t("ssh"), Some(&[a]));
        note(&p, &t("ssh_s1"), None);
        let mut n = Notes::new(&p);
        assert_eq!(n.take(), "pfknock\tssh\t198.18.0.7\npfknock\tssh_s1\t*\n");
        assert!(!p.exists(), "taken");
        assert_eq!(n.take(), "", "taken once");
        // A notes file others may write is not believed.
        note(&p, &t("ssh"), Some(&[a]));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(n.take(), "");
        assert!(!p.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
