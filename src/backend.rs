//! The firewall of this system, chosen once from the OS (and, on Linux,
//! from what is installed in the system's directories, never from
//! `$PATH`): pf through /dev/pf and pfctl(8), or nftables through nft(8).
//! One value serves the CLI and the daemon alike: it opens the table
//! interface, and it loads, checks and unloads the rules (`Loader`).
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::error::{Error, Result};
use crate::name::AnchorName;
use crate::{nft, pf, pfctl, render, tables, tool};

/// The firewall this system has.
pub enum Backend {
    Pf,
    Nft(nft::Nft),
}

/// pf on FreeBSD, OpenBSD and macOS; elsewhere nftables where nft(8) is in
/// the system's directories, else pf where a pfctl(8) is (tests give a
/// stand-in pfctl through `tool::TOOL_DIR_VAR`). `$PATH` is never read.
pub fn detect() -> Result<Backend> {
    if cfg!(any(
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "macos"
    )) {
        return Ok(Backend::Pf);
    }
    if let Some(nft) = tool::find("nft") {
        Ok(Backend::Nft(nft::Nft {
            argv: vec![nft.display().to_string()],
            remade: Default::default(),
            went: Default::default(),
        }))
    } else if pfctl::find().is_some() {
        Ok(Backend::Pf)
    } else {
        let dirs: Vec<String> = tool::dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        Err(Error::Unavailable(format!(
            "pf is not available on this system, and nft(8) is not in {}",
            dirs.join(", ")
        )))
    }
}

/// The table interface of this system's firewall.
pub fn open_tables(write: bool) -> Result<Box<dyn tables::Tables>> {
    detect()?.tables(write)
}

/// Renders and loads the config's rules: pfctl(8) on pf, nft(8) on
/// nftables. The daemon's restore, its reload and `pfknock load` all go
/// through it.
pub trait Loader {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()>;
    /// Does the main ruleset call the anchor?
    fn referenced(&mut self, anchor: &AnchorName) -> Result<bool>;
    /// Is pf enabled? `None` when it cannot be told.
    fn enabled(&mut self) -> Option<bool>;
    /// Take the knock rules away. On pf the main ruleset then decides
    /// (its `block` keeps the ports closed); on nftables the table is left
    /// closed: the protected ports drop all but the allow list, unless
    /// `open` (nftables only) deletes the table.
    fn unload(&mut self, cfg: &Config, open: bool) -> Result<()>;
    /// Would loading `new` where `old` is loaded make none of `sets` anew:
    /// keep each with its elements untouched (left as it is or changed in
    /// place), or delete it, or leave it unmade? On nftables, where a set
    /// both make differs at most in its timeout or size, on a kernel that
    /// changes those in place (Linux 6.5 and later); never on pf. The
    /// daemon loads during a reading of its sets only where it would.
    fn remakes_none(&mut self, old: &Config, new: &Config, sets: &[String]) -> bool {
        let _ = (old, new, sets);
        false
    }
    /// What the last load took away with it, said as done `by` (`pfknock
    /// load`, `pfknock run`): on nftables the authorized sets it deleted,
    /// counted just before (`nft::Going`). None on pf, whose tables stay:
    /// they are emptied after the load (`verbs::empty_leftovers`).
    fn went(&mut self, by: &str) -> Vec<String> {
        let _ = by;
        Vec::new()
    }
    /// Did the last load make anew a set it asked the kernel to change in
    /// place (the kernel did not take the change)?
    fn remade(&mut self) -> bool {
        false
    }
}

impl Loader for Backend {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()> {
        match self {
            Backend::Pf => {
                // A table whose `counters` would flip while it holds
                // entries is refused before pfctl runs (where /dev/pf is:
                // tests drive a stand-in pfctl on Linux).
                match pf::open(false)
                    .and_then(|mut t| tables::Tables::table_stats(&mut t, &cfg.anchor))
                {
                    Ok(live) => check_counter_flips(cfg, &live)?,
                    Err(e) if e.outcome().is_some_and(|o| o.is_missing()) => {}
                    Err(_) if !pf::AVAILABLE => {}
                    Err(e) => return Err(e),
                }
                pfctl::load(&cfg.anchor, &render::pf::render(cfg, source))
            }
            // The nftables table names no source file: it is applied as
            // data, not as text.
            Backend::Nft(n) => {
                n.load(cfg)?;
                write_include(cfg, &render::nft::render(cfg, source))
            }
        }
    }
    fn referenced(&mut self, anchor: &AnchorName) -> Result<bool> {
        match self {
            Backend::Pf => pfctl::anchor_referenced(anchor),
            Backend::Nft(_) => Ok(true),
        }
    }
    fn enabled(&mut self) -> Option<bool> {
        match self {
            Backend::Pf => pfctl::enabled(),
            Backend::Nft(_) => Some(true),
        }
    }
    fn remakes_none(&mut self, old: &Config, new: &Config, sets: &[String]) -> bool {
        if !matches!(self, Backend::Nft(_)) || !nft::changes_sets_in_place() {
            return false;
        }
        none_remade(old, new, sets)
    }
    fn remade(&mut self) -> bool {
        matches!(self, Backend::Nft(n) if n.remade.get())
    }
    fn went(&mut self, by: &str) -> Vec<String> {
        match self {
            Backend::Nft(n) => (n.went.borrow().iter())
                .filter_map(|g| g.line(by))
                .collect(),
            Backend::Pf => Vec::new(),
        }
    }
    fn unload(&mut self, cfg: &Config, open: bool) -> Result<()> {
        match self {
            Backend::Pf => pfctl::unload(&cfg.anchor),
            Backend::Nft(n) if open => {
                n.unload()?;
                match &cfg.nft_include {
                    Some(p) => match std::fs::remove_file(p) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        Err(source) => Err(Error::Device {
                            path: p.display().to_string(),
                            op: "remove",
                            source,
                        }),
                    },
                    None => Ok(()),
                }
            }
            Backend::Nft(n) => {
                n.close(cfg)?;
                write_include(cfg, &render::nft::render_closed(cfg, "unload"))
            }
        }
    }
}

impl Backend {
    /// Refuse what this firewall cannot do, before anything is loaded:
    /// `[[expire]]` names pf tables of a hand-written ruleset, which
    /// nftables does not have (its sets time out by themselves).
    pub fn supports(&self, cfg: &Config, path: &std::path::Path) -> Result<()> {
        let caps = match self {
            Backend::Pf => tables::Caps::PF,
            Backend::Nft(_) => tables::Caps::NFT,
        };
        supported(caps, cfg, path)
    }

    /// The table interface: /dev/pf (read-only unless `write`), or nft(8).
    pub fn tables(&self, write: bool) -> Result<Box<dyn tables::Tables>> {
        Ok(match self {
            Backend::Pf => Box::new(pf::open(write)?),
            Backend::Nft(n) => Box::new(nft::NftTables::new(n.clone())),
        })
    }

    /// Have the firewall's own parser check the rendered rules, loading
    /// nothing: `pfctl -n` or `nft -c`. Says what checked them.
    pub fn check(&self, cfg: &Config, source: &str) -> Result<Option<String>> {
        match self {
            Backend::Pf if pfctl::find().is_some() => {
                pfctl::check(&cfg.anchor, &render::pf::render(cfg, source))?;
                Ok(Some(format!(
                    "pfctl -n accepted anchor {}",
                    cfg.anchor.as_str()
                )))
            }
            Backend::Nft(n) if !cfg.services.is_empty() => {
                n.check(&render::nft::render(cfg, source))?;
                Ok(Some(format!(
                    "nft -c accepted table inet {}",
                    render::nft::TABLE
                )))
            }
            _ => Ok(None),
        }
    }
}

/// Refuse what a firewall with `caps` cannot do, before anything is
/// loaded (`pfknock load`, `run`, and each reload of a running daemon):
/// `[[expire]]` names pf tables of a hand-written ruleset, which nftables
/// does not have (its sets time out by themselves).
pub fn supported(caps: tables::Caps, cfg: &Config, path: &std::path::Path) -> Result<()> {
    if let (false, Some(e)) = (caps.expire_tables, cfg.expires.first()) {
        return Err(Error::Config {
            file: path.to_owned(),
            line: 0,
            key: "expire".into(),
            msg: format!(
                "table <{}>: [[expire]] expires pf tables; nftables has none here \
                     (its sets time out by themselves): remove the [[expire]] section",
                e.table
            ),
        });
    }
    Ok(())
}

/// Write the table as loaded to `nft_include`, if the config names one:
/// a new file beside it, then renamed over it, so that a reload of the
/// admin's ruleset never reads half a file. Its directory is made (one
/// level, mode 0755) when missing.
fn write_include(cfg: &Config, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Some(path) = &cfg.nft_include else {
        return Ok(());
    };
    let err = |op: &'static str| {
        move |source| Error::Device {
            path: path.display().to_string(),
            op,
            source,
        }
    };
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .map_err(err("mkdir"))?;
    }
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(err("write"))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err("write"))?;
    std::fs::rename(&tmp, path).map_err(err("rename"))
}

/// Refuse a load that would turn `counters` on or off on a populated live
/// table: pf copies the flag from the new ruleset's table without giving
/// the kept entries counters (FreeBSD 13.0 pfr_commit_ktable; the next
/// counted packet dereferences NULL). docs/pf-kernel.md "Counters".
/// `live` is the anchor's table statistics, as `Tables::table_stats` reads
/// them.
pub fn check_counter_flips(cfg: &crate::config::Config, live: &[tables::TableStat]) -> Result<()> {
    use crate::config::Role;
    for s in &cfg.services {
        for (t, role) in s.tables() {
            let want = role == Role::Auth && s.expire == crate::name::ExpireMode::Idle;
            let Some(st) = live.iter().find(|x| x.active && x.name == t.as_str()) else {
                continue;
            };
            match st.counters {
                Some(have) if have != want && st.count > 0 => {
                    return Err(crate::error::Error::Other(format!(
                        "table <{t}> in anchor {}: expire changed to \"{}\" while the table \
                         holds {} entries; pf cannot {} counters on a live table safely \
                         (FreeBSD's pfr_commit_ktable gives kept entries none): \
                         run pfknock flush {} (or let the entries expire) and load again",
                        cfg.anchor.as_str(),
                        if want { "idle" } else { "age" },
                        st.count,
                        if want { "turn on" } else { "turn off" },
                        s.name,
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Would nftables make none of `sets` anew, loading `new` where `old` is
/// loaded? A set both make must keep its elements
/// (`nft::keeps_elements` on its definition before and after); one that
/// only `old` makes is deleted, one that only `new` makes is made, one
/// that neither makes (a family a service does not take) is not there.
fn none_remade(old: &Config, new: &Config, sets: &[String]) -> bool {
    let (was, will) = (render::nft::build(old), render::nft::build(new));
    sets.iter().all(|name| {
        let def = |t: &render::nft::TableDef| t.sets().find(|d| d.name == *name).cloned();
        match (def(&was), def(&will)) {
            (Some(a), Some(b)) => nft::keeps_elements(&a, &b),
            _ => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: &str =
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\n";

    fn cfg(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("t.toml"))
            .unwrap()
            .0
    }

    #[test]
    fn the_authorized_sets_stay_where_only_a_ttl_size_rate_or_rule_changed() {
        let sets = ["ssh_4".to_owned(), "ssh_6".to_owned()];
        let old = cfg(SSH);
        let kept = |text: &str| none_remade(&old, &cfg(text), &sets);
        assert!(kept(SSH));
        assert!(kept(&SSH.replace("60s", "30s")));
        assert!(kept(&(SSH.to_owned() + "size = 131072\n")));
        assert!(
            kept(&(SSH.to_owned() + "rate = \"2/9\"\n")),
            "a meter is no authorized set"
        );
        assert!(kept(&SSH.replace("[1234]", "[1234, 2345]")));
        let same_table = SSH.replace("\"ssh\"", "\"sshd\"") + "table = \"ssh\"\n";
        assert!(!kept(&same_table), "another service's, under the same name");
    }

    #[test]
    fn sets_deleted_or_never_made_are_not_made_anew() {
        let sets = ["ssh_4".to_owned(), "ssh_6".to_owned()];
        let remade = |old: &str, new: &str| !none_remade(&cfg(old), &cfg(new), &sets);
        let v4 = SSH.to_owned() + "family = \"inet\"\n";
        assert!(
            !remade(SSH, &SSH.replace("\"ssh\"", "\"sshd\"")),
            "both deleted"
        );
        assert!(!remade(SSH, &v4), "ssh_6 deleted");
        assert!(!remade(&v4, &v4.replace("60s", "30s")), "ssh_6 never made");
        assert!(!remade(&v4, SSH), "ssh_6 made");
        assert!(remade(
            &v4,
            &(v4.replace("\"ssh\"", "\"sshd\"") + "table = \"ssh\"\n")
        ));
    }
}
