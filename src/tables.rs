//! The narrow kernel interface every table command and the daemon use:
//! list a table with per-entry stats, table statistics, add, delete, renew,
//! create. `pf::PfTables` implements it over /dev/pf.
#![forbid(unsafe_code)]

use std::fmt;

use crate::error::Result;
use crate::name::{AnchorName, Net, TableName};

/// One of pf's global pools (`set limit`), shared by every anchor and
/// rule, that a knock needs room in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pool {
    /// `table-entries`: the overload insert of a knock. At the limit it
    /// fails without a word and the knock opens nothing.
    TableEntries,
    /// `src-nodes`: `max-src-conn-rate` keeps one per source and rule. At
    /// the limit pf creates no state for a new source: its knock is
    /// dropped.
    SrcNodes,
}

impl Pool {
    /// The word `set limit` takes in pf.conf.
    pub fn limit_name(self) -> &'static str {
        match self {
            Pool::TableEntries => "table-entries",
            Pool::SrcNodes => "src-nodes",
        }
    }

    /// What it counts.
    pub fn unit(self) -> &'static str {
        match self {
            Pool::TableEntries => "entries in all tables",
            Pool::SrcNodes => "source nodes",
        }
    }

    /// What a full pool does to knocks, until when.
    pub fn effect(self) -> &'static str {
        match self {
            Pool::TableEntries => "knocks are not added to tables until entries expire",
            Pool::SrcNodes => "knocks from new sources are dropped until source nodes expire",
        }
    }
}

/// A pool as read from the kernel: how much of it is held, of its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub pool: Pool,
    pub used: u64,
    pub limit: u64,
}

impl PoolUse {
    pub fn is_full(&self) -> bool {
        self.used >= self.limit
    }
}

/// A table, addressed as pf addresses it: (anchor path, name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    pub anchor: AnchorName,
    pub name: TableName,
}

impl TableRef {
    pub fn new(anchor: &AnchorName, name: &TableName) -> Self {
        TableRef {
            anchor: anchor.clone(),
            name: name.clone(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.name)?;
        if !self.anchor.is_main() {
            write!(f, " in anchor {}", self.anchor.as_str())?;
        }
        Ok(())
    }
}

/// One table entry as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub net: Net,
    /// When the kernel inserted the entry (or last reset its statistics),
    /// in seconds since the epoch. Never moved by a matching packet.
    pub tzero: i64,
    /// Packets and bytes counted for the entry, in and out, all verdicts.
    pub packets: u64,
    pub bytes: u64,
    /// False when the table keeps no per-entry counters (no `counters`
    /// flag): the two fields above are then zero, not measured.
    pub counted: bool,
}

/// Statistics of one table (`pfr_tstats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStat {
    pub name: String,
    pub anchor: String,
    /// The table is in use (pf: PFR_TFLAG_ACTIVE; nftables: the set is
    /// there).
    pub active: bool,
    /// Number of entries.
    pub count: u64,
    /// pf: the table keeps per-entry counters (PFR_TFLAG_COUNTERS); None
    /// where the flag does not exist (macOS, nftables).
    pub counters: Option<bool>,
    /// Packets the table's rules counted, all directions and verdicts: it
    /// moves whenever any entry (or a miss) is matched.
    pub packets: u64,
    pub tzero: i64,
}

/// What a backend does by itself, so that callers ask once instead of at
/// every turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// The firewall refreshes an entry's time stamp itself, on a new knock
    /// and (idle expiry) on traffic, as nftables' `update` does: then there
    /// is no renewal table, idle expiry is age since the last refresh, and
    /// nobody watches counters.
    pub refreshes_entries: bool,
    /// Entries carry packet counters that idle expiry can watch.
    pub entry_counters: bool,
    /// Whose tool cuts a host's open connections: pfctl -k or conntrack.
    pub kills_states: KillStates,
    /// Knock rules carry their own time window (nftables' `meta time`), so
    /// a rotating service's rules are loaded once a step, ahead of it: the
    /// windows retire a step's ports by themselves.
    pub timed_rules: bool,
    /// `[[expire]]` can name tables here: pf's, of a hand-written ruleset.
    /// nftables has none such (its sets time out by themselves).
    pub expire_tables: bool,
    /// Dynamic tables hold networks as well as hosts (pf). nftables'
    /// authorized sets hold single addresses: a network is in none of them.
    pub networks: bool,
}

/// How `revoke --kill-states` cuts open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillStates {
    /// `pfctl -k HOST`: every state from the host.
    Pfctl,
    /// conntrack(8): the host's entries to the protected ports.
    Conntrack,
}

/// Why a network is no entry where tables hold hosts only (`Caps::networks`
/// false): `allow` and `revoke` say it alike.
pub fn hosts_only_words(n: &Net) -> String {
    format!("{n}: nftables sets of authorized hosts hold single addresses, not networks")
}

impl Caps {
    pub const PF: Caps = Caps {
        refreshes_entries: false,
        entry_counters: true,
        kills_states: KillStates::Pfctl,
        timed_rules: false,
        expire_tables: true,
        networks: true,
    };
    pub const NFT: Caps = Caps {
        refreshes_entries: true,
        entry_counters: false,
        kills_states: KillStates::Conntrack,
        timed_rules: true,
        expire_tables: false,
        networks: false,
    };
}

/// Flags for a table pfknock creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFlags {
    pub persist: bool,
    pub counters: bool,
}

pub trait Tables {
    /// Every entry of the table, with its time stamp and counters.
    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>>;
    /// Statistics of every table in the anchor (only that anchor).
    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>>;
    /// Add host or network entries; returns how many were new.
    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize>;
    /// Delete entries; returns how many were present.
    fn delete(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize>;
    /// Add entries; returns those that were new, in the order asked. By
    /// default a request per address; pf tells each in one (feedback).
    fn add_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        each(addrs, |a| self.add(t, &[a]))
    }
    /// Delete entries; returns those that were present, in the order
    /// asked. By default a request per address; pf tells each in one.
    fn delete_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        each(addrs, |a| self.delete(t, &[a]))
    }
    /// Give present entries a fresh time stamp (now); returns how many.
    fn renew(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize>;
    /// Create tables (and their anchor); returns how many were new.
    fn create(&mut self, tables: &[(TableRef, TableFlags)]) -> Result<usize>;
    /// Add entries that have this many seconds left (restoring them).
    /// Where entries have no timers of their own (pf), the kernel stamps
    /// them now and the caller keeps their age. No default: what it does
    /// differs per backend, and a forwarding impl must not fall back.
    fn add_timed(&mut self, t: &TableRef, entries: &[(Net, u64)]) -> Result<usize>;
    /// What this firewall does by itself, asked once by each user.
    fn caps(&self) -> Caps;

    /// Sets at their size, as of the last `table_stats`: (name, size).
    /// pf tables have no size of their own (pf's `set limit
    /// table-entries` is global), so none there.
    fn full_sets(&self) -> Vec<(String, u64)>;

    /// pf's global pools that a knock draws on, each as held by every
    /// anchor and rule against its `set limit`. Empty where every set and
    /// meter has a size of its own (nftables).
    fn pools(&mut self) -> Result<Vec<PoolUse>>;

    /// Are the rules and sets of the config's ruleset all in place, as of
    /// the last `table_stats`? `None` where the backend cannot tell (pf:
    /// the anchor's rules are pfctl's; a flushed anchor shows as missing
    /// tables).
    fn intact(&self, cfg: &crate::config::Config) -> Option<bool>;
    /// One entry of the table, if it is there (for the age a command
    /// reports). By default from the whole listing.
    fn entry(&mut self, t: &TableRef, net: &Net) -> Result<Option<Entry>> {
        Ok(self.entries(t)?.into_iter().find(|e| e.net == *net))
    }
    /// How many elements these sets (nftables names) hold, as the caller
    /// has just read them whole: the next `table_stats` takes these
    /// instead of reading those sets again (a dump of a million costs
    /// the kernel about as much as the reading it repeats), once. By
    /// default nothing: pf tables have their counts from one request.
    fn counted(&mut self, counts: &[(String, u64)]) {
        let _ = counts;
    }
    /// Empty the table in one step of the kernel's, each entry it held
    /// told back as it goes (nftables: the kernel's flush of each set,
    /// its deletions echoed). `None` where the backend has no such step
    /// (pf's DIOCRCLRADDRS tells only a count): the caller lists and
    /// deletes.
    fn clear(&mut self, t: &TableRef) -> Result<Option<Cleared>> {
        let _ = t;
        Ok(None)
    }
}

/// What `Tables::clear` removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cleared {
    /// The entries the kernel told back, with their time stamps.
    pub entries: Vec<Entry>,
    /// Were they all? False when the kernel removed more than it could
    /// tell (a flush of millions overflows the socket's buffer).
    pub whole: bool,
}

// Every method forwarded: a default here would silently replace the
// backend's own behaviour (a restore with a fresh ttl did once).
#[deny(clippy::missing_trait_methods)]
impl<T: Tables + ?Sized> Tables for Box<T> {
    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        (**self).entries(t)
    }
    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        (**self).table_stats(anchor)
    }
    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        (**self).add(t, addrs)
    }
    fn delete(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        (**self).delete(t, addrs)
    }
    fn add_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        (**self).add_each(t, addrs)
    }
    fn delete_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        (**self).delete_each(t, addrs)
    }
    fn renew(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        (**self).renew(t, addrs)
    }
    fn create(&mut self, tables: &[(TableRef, TableFlags)]) -> Result<usize> {
        (**self).create(tables)
    }
    fn add_timed(&mut self, t: &TableRef, entries: &[(Net, u64)]) -> Result<usize> {
        (**self).add_timed(t, entries)
    }
    fn caps(&self) -> Caps {
        (**self).caps()
    }
    fn full_sets(&self) -> Vec<(String, u64)> {
        (**self).full_sets()
    }
    fn pools(&mut self) -> Result<Vec<PoolUse>> {
        (**self).pools()
    }
    fn intact(&self, cfg: &crate::config::Config) -> Option<bool> {
        (**self).intact(cfg)
    }
    fn entry(&mut self, t: &TableRef, net: &Net) -> Result<Option<Entry>> {
        (**self).entry(t, net)
    }
    fn counted(&mut self, counts: &[(String, u64)]) {
        (**self).counted(counts)
    }
    fn clear(&mut self, t: &TableRef) -> Result<Option<Cleared>> {
        (**self).clear(t)
    }
}

/// The addresses for which `op`, asked of each alone, changed an entry.
fn each(addrs: &[Net], mut op: impl FnMut(Net) -> Result<usize>) -> Result<Vec<Net>> {
    let mut seen = std::collections::HashSet::with_capacity(addrs.len());
    let mut out = Vec::new();
    for a in addrs.iter().copied().filter(|a| seen.insert(*a)) {
        if op(a)? > 0 {
            out.push(a);
        }
    }
    Ok(out)
}

/// Move hosts from table `from` (pf's intake) into `to` (the authorized
/// table): add them to `to`, then delete them from `from`, and take back
/// out of `to` each host this call added that `from` no longer held. So a
/// host that someone deleted from both tables meanwhile (`revoke`, which
/// deletes from `from` first, then from `to`) stays out, at whichever
/// point the deletion came: before the add, between the add and the
/// delete, or after. Returns the hosts this call added and left in `to`.
///
/// The order matters: deleting from `from` first would leave a moment in
/// which the host is in neither table (its new connections refused), and
/// a `revoke` in that moment would find it nowhere and be undone by the
/// add that follows.
pub fn move_hosts(
    t: &mut (impl Tables + ?Sized),
    from: &TableRef,
    to: &TableRef,
    hosts: &[Net],
) -> Result<Vec<Net>> {
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let added = t.add_each(to, hosts)?;
    let held: std::collections::HashSet<Net> = t.delete_each(from, hosts)?.into_iter().collect();
    let (kept, back): (Vec<Net>, Vec<Net>) = added.into_iter().partition(|n| held.contains(n));
    if !back.is_empty() {
        t.delete(to, &back)?;
    }
    Ok(kept)
}
