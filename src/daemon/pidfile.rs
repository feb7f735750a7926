//! The daemon's pidfile, kept as pidfile(3) keeps one.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the daemon keeps its pid when `-p` does not say: one daemon per
/// system, whoever starts it.
pub const DEFAULT_PIDFILE: &str = "/var/run/pfknock.pid";

/// A pidfile as pidfile(3) keeps one: opened without following a symbolic
/// link, a regular file, locked for the life of the daemon, and removed at
/// the end only if the path still names the file that was locked.
pub struct Pidfile {
    path: PathBuf,
    file: std::fs::File,
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source: std::io::Error| Error::Device {
            path: path.display().to_string(),
            op: "pidfile",
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    Error::Other(format!(
                        "{}: a symbolic link: refusing to write a pidfile through it",
                        path.display()
                    ))
                } else {
                    io(e)
                }
            })?;
        let m = f.metadata().map_err(io)?;
        if !m.file_type().is_file() {
            return Err(Error::Other(format!(
                "{}: not a regular file: refusing to use it as a pidfile",
                path.display()
            )));
        }
        // Another user's file (made first in a directory others can
        // write, and locked by them) would keep the daemon from starting,
        // or let them read and move its pid: refused.
        {
            use std::os::unix::fs::MetadataExt;
            if m.uid() != crate::sys_unix::euid() {
                return Err(Error::Other(format!(
                    "{}: owned by uid {}, not by this user: refusing to use it as a pidfile",
                    path.display(),
                    m.uid()
                )));
            }
        }
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(Error::Other(if pid.is_empty() {
                    format!(
                        "{}: locked: pfknock is already running (still starting)",
                        path.display()
                    )
                } else {
                    format!(
                        "{}: locked: pfknock is already running (pid {})",
                        path.display(),
                        crate::name::shown(pid)
                    )
                }));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let p = Pidfile {
            path: path.to_owned(),
            file: f,
        };
        // A dead daemon's pid goes now; this one's is written once it
        // serves (`write_pid`), so a pid in the file means a daemon that
        // has loaded its rules and listens.
        p.file.set_len(0).map_err(io)?;
        Ok(p)
    }

    /// Write this process's pid, once it serves.
    pub fn write_pid(&self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let mut f = &self.file;
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let (Ok(ours), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path))
        else {
            return;
        };
        if now.file_type().is_file() && now.dev() == ours.dev() && now.ino() == ours.ino() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
