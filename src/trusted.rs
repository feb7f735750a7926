//! Opening a file that pfknock acts on as root (its config, a secret) so
//! that what is checked is what is read: walking from `/` one component
//! at a time with openat(2) and `O_NOFOLLOW`, checking each directory by
//! its descriptor, never by a second resolution of the path (sudo-rs'
//! `traversed_secure_open` does the same).
//!
//! Every directory on the way must be root's and writable by nobody else,
//! or sticky as /tmp is (nobody else can rename or remove what root put
//! there). A symbolic link is followed only when root owns it: in such a
//! directory nobody else can have put it there, and in a sticky one a
//! link another user planted (to a root-owned file, say) is refused.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, openat, readlinkat, statat};

/// Symbolic links followed on one walk at most, as the kernel's own
/// limit (Linux MAXSYMLINKS 40).
const MAX_LINKS: usize = 40;

/// Why a file was not opened.
#[derive(Debug)]
pub enum Refused {
    /// The system said no (missing, permission, a loop of links).
    Io(std::io::Error),
    /// Something on the way is not root's alone: the words say what.
    Untrusted(String),
}

impl From<rustix::io::Errno> for Refused {
    fn from(e: rustix::io::Errno) -> Self {
        Refused::Io(e.into())
    }
}

fn parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// A directory on the way: root's, and writable by nobody else unless it
/// is sticky.
fn check_dir(fd: OwnedFd, shown: &Path) -> Result<OwnedFd, Refused> {
    let f = File::from(fd);
    let m = f.metadata().map_err(Refused::Io)?;
    let sticky = m.mode() & 0o1000 != 0;
    if m.uid() != 0 || (m.mode() & 0o022 != 0 && !sticky) {
        return Err(Refused::Untrusted(format!(
            "directory {} is writable by someone other than root (owner uid {}, mode {:04o}): \
             refusing to use a file in it",
            crate::name::no_controls(&shown.display().to_string()),
            m.uid(),
            m.mode() & 0o7777
        )));
    }
    Ok(OwnedFd::from(f))
}

fn root() -> Result<OwnedFd, Refused> {
    let fd = openat(
        CWD,
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    check_dir(fd, Path::new("/"))
}

/// Open `path` for reading (without blocking: a FIFO cannot hang it),
/// walking from `/`. The file itself is the caller's to check, by the
/// descriptor returned.
pub fn open(path: &Path) -> Result<File, Refused> {
    let abs = std::path::absolute(path).map_err(Refused::Io)?;
    let mut todo = parts(&abs);
    let mut dir = root()?;
    let mut shown = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        let last = todo.is_empty();
        let flags = OFlags::RDONLY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | if last {
                OFlags::NONBLOCK
            } else {
                OFlags::DIRECTORY
            };
        match openat(&dir, c.as_os_str(), flags, Mode::empty()) {
            Ok(fd) if last => return Ok(File::from(fd)),
            Ok(fd) => {
                if c == ".." {
                    shown.pop();
                } else {
                    shown.push(&c);
                }
                dir = check_dir(fd, &shown)?;
            }
            Err(e) => {
                // O_NOFOLLOW met a link: ELOOP (Linux, OpenBSD, macOS) or
                // EMLINK (FreeBSD). Anything else is the answer.
                let st = statat(&dir, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|_| Refused::Io(e.into()))?;
                if FileType::from_raw_mode(st.st_mode as _) != FileType::Symlink {
                    return Err(Refused::Io(e.into()));
                }
                let link = shown.join(&c);
                if st.st_uid != 0 {
                    return Err(Refused::Untrusted(format!(
                        "{} is a symbolic link owned by uid {}, not root: not followed",
                        crate::name::no_controls(&link.display().to_string()),
                        st.st_uid
                    )));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Refused::Io(std::io::Error::from_raw_os_error(libc::ELOOP)));
                }
                let target = readlinkat(&dir, c.as_os_str(), Vec::new())?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                let mut next = parts(target);
                next.extend(todo);
                todo = next;
                if target.is_absolute() {
                    dir = root()?;
                    shown = PathBuf::from("/");
                }
            }
        }
    }
    // The path named `/` itself, or only `..`s above it.
    Err(Refused::Io(std::io::Error::from_raw_os_error(libc::EISDIR)))
}

// ---- reading what was opened -------------------------------------------------

/// The largest config file pfknock reads: a million allow entries take
/// about 18 MB of text.
pub const CONFIG_MAX: u64 = 64 << 20;

/// Read a file that pfknock will act on as root, the one safe way: open it
/// (without blocking, so a FIFO cannot hang it), then check the open
/// descriptor, not the path: a regular file of at most `CONFIG_MAX` bytes.
/// With `root_only`, also owned by root and writable by nobody else, in
/// directories that root alone can change (a sticky directory such as
/// /tmp counts as safe: nobody else can rename what root put there),
/// reached without following a symbolic link that root does not own
/// (`open`).
/// `-` (standard input) is refused: there is nothing to check.
pub fn read_trusted(path: &Path, root_only: bool) -> Result<String> {
    read_checked(path, root_only).map(|(text, _)| text)
}

/// The largest secret file read: a line of hexadecimal digits.
const SECRET_FILE_MAX: u64 = 4096;

/// Read a secret file (`rotate.secret`, `knock --secret`): as
/// `read_trusted`, and besides owned by the user pfknock runs as, with
/// no access for group or others.
pub fn read_secret_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let root = crate::sys_unix::euid() == 0;
    let (text, m) = read_checked(path, root)?;
    let euid = crate::sys_unix::euid();
    if m.uid() != euid || m.mode() & 0o077 != 0 || m.len() > SECRET_FILE_MAX {
        return Err(Error::Config {
            file: path.to_owned(),
            line: 0,
            key: String::new(),
            msg: if m.len() > SECRET_FILE_MAX {
                format!("{} bytes: not a secret file", m.len())
            } else {
                format!(
                    "a secret file must be owned by uid {euid} with mode 0600 or stricter \
                     (owner uid {}, mode {:04o}): refusing to use it",
                    m.uid(),
                    m.mode() & 0o7777
                )
            },
        });
    }
    Ok(text)
}

/// `N` bytes from the system's random source (a rotation secret, a
/// signing key, a nonce).
pub fn random<const N: usize>() -> Result<[u8; N]> {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| Error::Device {
            path: "/dev/urandom".into(),
            op: "read",
            source,
        })?;
    Ok(b)
}

/// Write `line` into a new file of `mode` (a key, a secret): never over an
/// existing file, nor through a symbolic link.
pub fn write_new(path: &Path, mode: u32, line: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |op: &'static str| {
        move |source| Error::Device {
            path: path.display().to_string(),
            op,
            source,
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io("create"))?;
    writeln!(f, "{line}").map_err(io("write"))?;
    f.sync_all().map_err(io("sync"))
}

fn read_checked(path: &Path, root_only: bool) -> Result<(String, std::fs::Metadata)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let bad = |msg: String| Error::Config {
        file: path.to_owned(),
        line: 0,
        key: String::new(),
        msg,
    };
    if path == Path::new("-") {
        return Err(Error::Usage(
            "-c -: a config from standard input cannot be checked for who may write it: give a file".into(),
        ));
    }
    let io = |source: std::io::Error| Error::ConfigFile {
        file: path.to_owned(),
        source,
    };
    // As root: walked from / (crate::trusted), so that the directories
    // checked are those of the file read, and no link another user
    // planted is followed.
    let f = if root_only {
        open(path).map_err(|r| match r {
            Refused::Io(e) => io(e),
            Refused::Untrusted(m) => bad(m),
        })?
    } else {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?
    };
    let m = f.metadata().map_err(io)?;
    if !m.file_type().is_file() {
        return Err(bad("not a regular file".into()));
    }
    if m.len() > CONFIG_MAX {
        return Err(bad(format!(
            "{} bytes: larger than {} MiB",
            m.len(),
            CONFIG_MAX >> 20
        )));
    }
    if root_only && (m.uid() != 0 || m.mode() & 0o022 != 0) {
        return Err(bad(format!(
            "writable by someone other than root (owner uid {}, mode {:04o}): refusing to use it",
            m.uid(),
            m.mode() & 0o7777
        )));
    }
    let mut text = String::new();
    f.take(CONFIG_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > CONFIG_MAX {
        return Err(bad(format!("larger than {} MiB", CONFIG_MAX >> 20)));
    }
    Ok((text, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Root only: the walk's checks are about who owns what.
    #[test]
    #[ignore = "root: files owned by other users; run as root with cargo test -- --include-ignored"]
    fn links_are_followed_only_where_root_put_them() {
        assert_eq!(crate::sys_unix::euid(), 0, "this test needs root");
        let d = std::env::temp_dir().join(format!("pfknock-trusted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("safe")).unwrap();
        std::fs::create_dir_all(d.join("sticky")).unwrap();
        std::fs::set_permissions(d.join("sticky"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        let conf = d.join("safe/pfknock.toml");
        std::fs::write(&conf, "anchor = \"pfknock\"\n").unwrap();
        let read = |p: &Path| open(p).map(|_| ());
        read(&conf).unwrap();
        // root's link in a sticky directory: followed.
        std::os::unix::fs::symlink(&conf, d.join("sticky/root.toml")).unwrap();
        read(&d.join("sticky/root.toml")).unwrap();
        // Another user's link there, to the same root-owned file: refused.
        std::os::unix::fs::symlink(&conf, d.join("sticky/planted.toml")).unwrap();
        std::os::unix::fs::lchown(d.join("sticky/planted.toml"), Some(65534), Some(65534)).unwrap();
        match read(&d.join("sticky/planted.toml")) {
            Err(Refused::Untrusted(m)) => assert!(m.contains("owned by uid 65534"), "{m}"),
            r => panic!("{r:?}"),
        }
        // A link to a directory others can write: refused at it.
        std::fs::create_dir_all(d.join("open")).unwrap();
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(d.join("open/x.toml"), "").unwrap();
        std::os::unix::fs::symlink(d.join("open"), d.join("safe/via")).unwrap();
        match read(&d.join("safe/via/x.toml")) {
            Err(Refused::Untrusted(m)) => assert!(m.contains("is writable by someone"), "{m}"),
            r => panic!("{r:?}"),
        }
        // Relative links and `..` resolve from where they stand.
        std::os::unix::fs::symlink("../safe/pfknock.toml", d.join("safe/rel.toml")).unwrap();
        read(&d.join("safe/rel.toml")).unwrap();
        // A loop ends.
        std::os::unix::fs::symlink(d.join("safe/loop"), d.join("safe/loop")).unwrap();
        assert!(matches!(read(&d.join("safe/loop")), Err(Refused::Io(_))));
        // Missing: the system's words.
        assert!(matches!(read(&d.join("safe/none")), Err(Refused::Io(_))));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
