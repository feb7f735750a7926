//! What the machine keeps of a reading's hosts while it runs beside the
//! loop (`heard.rs` says what it does with them): the knocks said as they
//! came, the changes others made, the hosts allowed, revoked or gone, per
//! (set, address); and their deadlines, so that they expire meanwhile.
//! Each record goes once its event comes or the reading is taken in, and
//! the room the records took is given back as they go (`thin`).
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use super::{Auth, Book, Taken};
use crate::kevents::KernelEvent;

/// What the machine holds of the knocks heard during a reading, per
/// (set, address).
#[derive(Default)]
pub(super) struct Knocks {
    /// Knocks whose events wait in the queue behind the start's reading,
    /// with the element the reading found (`knocks_waiting`).
    pub(super) waiting: HashMap<(String, IpAddr), Option<Auth>>,
    /// Knocks said as they came, their events still in the queue, and
    /// elements others added (`other_heard`), taken in with the reading
    /// (`take_records`): what the look-up found, or the event told, with
    /// its deadline, so that it expires meanwhile. A
    /// book of their own, as compact as the daemon's: a start's reading
    /// at a million under churn hears some 600,000, and a hash map of
    /// them and a set of their deadlines took 100 bytes and more each
    /// (`cargo bench --bench daemon churned-start`).
    said: Book,
    /// Those said whose element was gone, or went since, or is being
    /// looked up (few: a knock's, until its look-up comes back).
    said_gone: Hosts,
    /// Knocks said as they came whose events the kernel's overrun took
    /// from the queue: the reading it brings finds their elements, or
    /// says they went (`said_dropped_went`).
    pub(super) dropped: HashMap<(String, IpAddr), Option<Auth>>,
    /// Hosts that left their set while the reading ran (`pfknock revoke`,
    /// a close knock, a deletion by others, an expiry: `gone`): what it
    /// found of them is not taken in. By the set's number: an overrun's
    /// reading under churn sees as many expire as others add.
    removed: Hosts,
    /// Hosts `pfknock allow` (or a signed knock) added while the reading
    /// ran, and their authorizations: taken in once it is (`take_allowed`).
    pub(super) allowed: HashMap<(String, IpAddr), Auth>,
    /// Element changes heard during the reading whose transaction's
    /// commit has not come yet (`others_heard`).
    pub(super) batch: Vec<KernelEvent>,
    /// Hosts whose close knock was said as it came (`close_heard`): its
    /// event, after the reading, says nothing.
    pub(super) closed: HashSet<(String, IpAddr)>,
    /// Authorizations expire while the reading runs (`due_while_read`).
    pub(super) reading: bool,
    /// The deadlines of those allowed (`allowed`; those said are in
    /// `said`), so that they too expire while the reading runs; one no
    /// longer theirs is passed over (`take_due`).
    due: BTreeSet<(i64, u32, IpAddr)>,
    /// Knock packets heard during the reading of hosts known or said by
    /// then: what they did is said and kept as they come (a renewal), so
    /// their events, after the reading, do nothing (`heard_again`); each
    /// would move the deadline on by as long as it waited. So too a full
    /// meter's (keyed by the meter): said full, and looked at, as it came.
    pub(super) again: HashMap<(String, IpAddr), u32>,
    /// Sets `pfknock flush` emptied while the reading ran: what it found
    /// of them is not taken in, but for hosts said or allowed since.
    flushed: HashSet<String>,
    /// Hosts that left (`removed`) or that `pfknock allow` added while
    /// the start's reading ran, and the sets `pfknock flush` emptied
    /// then, kept past its take-in for the compare with the last run's
    /// record: each was said as it came, and the compare says nothing of
    /// them (`changed_while_read`). Given back once the compare is done,
    /// or when none follows the start (`compared`); else at the next
    /// reading's end (a reload's, which reads a set made anew).
    touched: Hosts,
    touched_sets: HashSet<String>,
    /// A compare with the last run's record follows the start's reading
    /// (`Machine::compare_follows`): the hosts taken in from their
    /// records (`taken`) are kept for it, as `touched`.
    pub(super) compare: bool,
    taken: Hosts,
    /// Hosts said because they knocked (not because others added
    /// them): their records wait for their knocks' events, which are
    /// queued (`take_records`).
    knocked: Hosts,
    /// The sets `said_gone`, `removed`, `touched` and `due` name, by
    /// number. Not `said`'s own numbers: `take_said` takes that book
    /// whole, and its numbering with it, while these records stay.
    sets: Sets,
}

/// The sets a reading's records name, each by a number of its own, kept
/// for the daemon's life (a config names few, and a reload keeps them):
/// a key of the set's name and the address took 48 bytes and a string
/// of 32 each, where the number and the address take 24 (`said_gone`),
/// and a deadline's 32, was 56 and the string (`due`).
#[derive(Default)]
struct Sets {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Sets {
    /// The number of `set`, given it one if it had none.
    fn id(&mut self, set: &str) -> u32 {
        if let Some(i) = self.ids.get(set) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(set.to_owned());
        self.ids.insert(set.to_owned(), i);
        i
    }

    /// The number of `set`, if it has one.
    fn find(&self, set: &str) -> Option<u32> {
        self.ids.get(set).copied()
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// Give back what a map of the reading's records holds beyond need, as
/// they go: a start's reading at a million under churn left `said`, then
/// empty, holding room for the 600,000 hosts others added meanwhile (75
/// MB at rest). Empty, it holds nothing; a quarter full, half (so each
/// shrink is paid for by as many removals as it moves entries).
fn thin<K: Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
    if m.is_empty() {
        if m.capacity() > 0 {
            *m = HashMap::new();
        }
    } else if m.capacity() > 1024 && m.len() < m.capacity() / 4 {
        m.shrink_to(m.len() * 2);
    }
}

/// Hosts by the number of their set (`Sets`), IPv4 apart from IPv6 so
/// that an IPv4 one takes 8 bytes, not 24: an overrun's reading under
/// churn at a million sees some 600,000 expire (`removed`). The room
/// goes as they do (`thin_set`).
#[derive(Default)]
struct Hosts {
    v4: HashSet<(u32, [u8; 4])>,
    v6: HashSet<(u32, [u8; 16])>,
}

impl Hosts {
    fn insert(&mut self, id: u32, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.v4.insert((id, a.octets())),
            IpAddr::V6(a) => self.v6.insert((id, a.octets())),
        };
    }

    /// Whether it was there.
    fn remove(&mut self, id: u32, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let had = self.v4.remove(&(id, a.octets()));
                thin_set(&mut self.v4);
                had
            }
            IpAddr::V6(a) => {
                let had = self.v6.remove(&(id, a.octets()));
                thin_set(&mut self.v6);
                had
            }
        }
    }

    fn contains(&self, id: u32, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.contains(&(id, a.octets())),
            IpAddr::V6(a) => self.v6.contains(&(id, a.octets())),
        }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Forget set `id`'s.
    fn drop_set(&mut self, id: u32) {
        self.v4.retain(|(w, _)| *w != id);
        self.v6.retain(|(w, _)| *w != id);
    }

    fn iter(&self) -> impl Iterator<Item = (u32, IpAddr)> + '_ {
        let v4 = (self.v4.iter()).map(|(i, a)| (*i, IpAddr::from(*a)));
        v4.chain((self.v6.iter()).map(|(i, a)| (*i, IpAddr::from(*a))))
    }

    /// The room held, in hosts (tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.v4.capacity() + self.v6.capacity()
    }
}

/// `thin` for a set of records.
fn thin_set<K: Eq + std::hash::Hash>(m: &mut HashSet<K>) {
    if m.is_empty() {
        if m.capacity() > 0 {
            *m = HashSet::new();
        }
    } else if m.capacity() > 1024 && m.len() < m.capacity() / 4 {
        m.shrink_to(m.len() * 2);
    }
}

impl Knocks {
    /// Forget what is known of `set` (a reload deleted it).
    pub(super) fn drop_set(&mut self, set: &str) {
        self.waiting.retain(|(w, _), _| w != set);
        if let Some(id) = self.said.find(set) {
            self.said.clear_set(id);
        }
        if let Some(id) = self.sets.find(set) {
            self.said_gone.drop_set(id);
            self.knocked.drop_set(id);
            self.taken.drop_set(id);
            self.removed.drop_set(id);
            self.touched.drop_set(id);
            self.due.retain(|(_, w, _)| *w != id);
        }
        self.touched_sets.remove(set);
        self.dropped.retain(|(w, _), _| w != set);
        self.allowed.retain(|(w, _), _| w != set);
        self.closed.retain(|(w, _)| w != set);
        self.again.retain(|(w, _), _| w != set);
        self.flushed.remove(set);
    }

    /// Is this knock event one of those heard during a reading of a host
    /// known or said by then? Then it is done.
    pub(super) fn heard_again(&mut self, set: &str, addr: IpAddr) -> bool {
        if self.again.is_empty() {
            return false;
        }
        let key = (set.to_owned(), addr);
        let Some(n) = self.again.get_mut(&key) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            self.again.remove(&key);
            thin(&mut self.again);
        }
        true
    }

    /// The record of `key` said during the reading, taken out: its event
    /// came, or it needs none.
    pub(super) fn unsay(&mut self, (set, addr): &(String, IpAddr)) -> Option<Option<Auth>> {
        if !self.knocked.is_empty()
            && let Some(id) = self.sets.find(set)
        {
            self.knocked.remove(id, *addr);
        }
        let said = self
            .said
            .find(set)
            .and_then(|id| self.said.remove(id, *addr));
        if let Some(a) = said {
            self.said.thin();
            return Some(Some(a));
        }
        if self.said_gone.is_empty() {
            return None;
        }
        let id = self.sets.find(set)?;
        self.said_gone.remove(id, *addr).then_some(None)
    }

    /// What was said of `key` during the reading (`None` inside: said
    /// gone, or being looked up).
    pub(super) fn said(&self, (set, addr): &(String, IpAddr)) -> Option<Option<Auth>> {
        if let Some(a) = self.said.find(set).and_then(|id| self.said.get(id, *addr)) {
            return Some(Some(a));
        }
        let id = self.sets.find(set)?;
        self.said_gone.contains(id, *addr).then_some(None)
    }

    /// All that was said during the reading, taken out (an overrun took
    /// their events).
    pub(super) fn take_said(&mut self) -> Vec<((String, IpAddr), Option<Auth>)> {
        let said = std::mem::take(&mut self.said);
        let gone = std::mem::take(&mut self.said_gone);
        self.knocked = Hosts::default();
        let sets = &self.sets;
        let gone = (gone.iter()).map(|(id, addr)| ((sets.name(id).to_owned(), addr), None));
        let said = (said.iter()).map(|(id, addr, a)| ((said.name(id).to_owned(), addr), Some(a)));
        said.chain(gone).collect()
    }

    /// Was nothing said during the reading, or is all of it taken out?
    pub(super) fn none_said(&self) -> bool {
        self.said.len() == 0 && self.said_gone.is_empty()
    }

    /// `pfknock flush` emptied `set`: those said or allowed went with it,
    /// and what the reading finds of it is not taken in.
    pub(super) fn flush(&mut self, set: String) {
        let said = self.said.find(&set).into_iter();
        let said = said.flat_map(|id| self.said.iter_set(id).map(|(a, _)| (set.clone(), a)));
        let id = self.sets.find(&set);
        let gone = (self.said_gone.iter())
            .filter(|(w, _)| Some(*w) == id)
            .map(|(_, a)| (set.clone(), a));
        let allowed = (self.allowed.keys()).filter(|(w, _)| *w == set).cloned();
        let keys: Vec<_> = said.chain(gone).chain(allowed).collect();
        keys.into_iter().for_each(|key| self.gone(key));
        self.flushed.insert(set);
    }

    /// The room `said` takes, in entries (tests).
    #[cfg(test)]
    pub(super) fn said_room(&self) -> usize {
        self.said.room() + self.said_gone.capacity()
    }

    /// The element the reading found of a knock waiting in the queue,
    /// taken out as its event comes.
    pub(super) fn unwait(&mut self, key: &(String, IpAddr)) -> Option<Option<Auth>> {
        let had = self.waiting.remove(key);
        thin(&mut self.waiting);
        had
    }

    /// `key` knocked: said once its look-up comes back (`say`), its
    /// record kept for its knock's event.
    pub(super) fn say_knock(&mut self, key: (String, IpAddr)) {
        let id = self.sets.id(&key.0);
        self.knocked.insert(id, key.1);
        self.say(key, None);
    }

    /// `key` said, with what its look-up found (`None`: gone).
    pub(super) fn say(&mut self, (set, addr): (String, IpAddr), a: Option<Auth>) {
        let id = self.sets.id(&set);
        match a {
            Some(a) => {
                self.said_gone.remove(id, addr);
                let s = self.said.id(&set);
                self.said.insert(s, addr, a);
            }
            None => {
                if let Some(s) = self.said.find(&set) {
                    self.said.remove(s, addr);
                }
                self.said_gone.insert(id, addr);
            }
        }
    }

    /// `key` allowed, with the authorization the allow gave.
    pub(super) fn allow(&mut self, key: (String, IpAddr), a: Auth) {
        self.due.insert((a.until, self.sets.id(&key.0), key.1));
        self.allowed.insert(key, a);
    }

    /// The first deadline of those said or allowed (maybe no longer
    /// theirs: then its wake finds nothing due).
    pub(super) fn next_due(&self) -> Option<i64> {
        let allowed = self.due.first().map(|(t, _, _)| *t);
        allowed.into_iter().chain(self.said.next_due()).min()
    }

    /// Those said or allowed whose deadline is `now` or before, with
    /// their authorizations.
    pub(super) fn take_due(&mut self, now: i64) -> Vec<(String, IpAddr, Auth)> {
        let said = self.said.take_due_at_most(now, usize::MAX).into_iter();
        let book = &self.said;
        let mut out: Vec<_> = said
            .map(|(id, a, x)| (book.name(id).to_owned(), a, x))
            .collect();
        while self.due.first().is_some_and(|(t, _, _)| *t <= now) {
            let Some((t, id, addr)) = self.due.pop_first() else {
                break;
            };
            let key = (self.sets.name(id).to_owned(), addr);
            if let Some(a) = self.allowed.get(&key).filter(|a| a.until == t) {
                out.push((key.0, key.1, *a));
            }
        }
        out
    }

    /// One said or allowed, looked up when due or renewed, is now `a`:
    /// its record takes it. False where there is no such record.
    pub(super) fn moved(&mut self, set: &str, addr: IpAddr, a: Auth) -> bool {
        let said = self
            .said
            .find(set)
            .filter(|id| self.said.get(*id, addr).is_some());
        if let Some(id) = said {
            self.said.insert(id, addr, a);
            return true;
        }
        let Some(had) = self.allowed.get_mut(&(set.to_owned(), addr)) else {
            return false;
        };
        *had = a;
        let id = self.sets.id(set);
        self.due.insert((a.until, id, addr));
        true
    }

    /// What is known of `key` that the book does not hold: said during
    /// the reading, or allowed.
    pub(super) fn known(&self, key: &(String, IpAddr)) -> Option<Auth> {
        let said = self.said(key).flatten();
        said.or_else(|| self.allowed.get(key).copied())
    }

    /// `key` left its set while the reading ran (a revoke, a close knock,
    /// a deletion by others): what the reading found of it is not taken
    /// in, and a knock of it said before is not taken in when its event
    /// comes.
    pub(super) fn gone(&mut self, key: (String, IpAddr)) {
        let id = self.said.find(&key.0);
        if id.and_then(|id| self.said.remove(id, key.1)).is_some() {
            let id = self.sets.id(&key.0);
            self.said_gone.insert(id, key.1);
        }
        self.allowed.remove(&key);
        let id = self.sets.id(&key.0);
        self.removed.insert(id, key.1);
    }

    /// `key` is back in its set (a knock, an allow, an addition by others
    /// after it left): whether it had left while the reading ran.
    pub(super) fn unremove(&mut self, (set, addr): &(String, IpAddr)) -> bool {
        if self.removed.is_empty() {
            return false;
        }
        (self.sets.find(set)).is_some_and(|id| self.removed.remove(id, *addr))
    }

    /// Was this close knock said as it came? Then its event says nothing.
    pub(super) fn close_said(&mut self, set: &str, addr: IpAddr) -> bool {
        !self.closed.is_empty() && self.closed.remove(&(set.to_owned(), addr))
    }

    /// Did `addr` change in `set` while the start's reading ran, said as
    /// it came or to be said when its event comes: a knock or an addition
    /// by others (`said`, `said_gone`, `waiting`, `again`), a close knock,
    /// a host that left or was allowed, a set flushed? Then the compare
    /// with the last run's record says nothing of it: what the book holds
    /// of it (or not) is since the start, not what happened while no
    /// daemon ran.
    pub(super) fn changed_while_read(&self, set: &str, addr: IpAddr) -> bool {
        let key = || (set.to_owned(), addr);
        let said = self
            .said
            .find(set)
            .is_some_and(|id| self.said.get(id, addr).is_some());
        let id = self.sets.find(set);
        let held = |h: &Hosts| !h.is_empty() && id.is_some_and(|id| h.contains(id, addr));
        said || held(&self.said_gone)
            || held(&self.touched)
            || held(&self.removed)
            || self.touched_sets.contains(set)
            || self.flushed.contains(set)
            || (!self.allowed.is_empty() && self.allowed.contains_key(&key()))
            || (!self.waiting.is_empty() && self.waiting.contains_key(&key()))
            || (!self.again.is_empty() && self.again.contains_key(&key()))
            || (!self.closed.is_empty() && self.closed.contains(&key()))
    }

    /// Does anything of the start's reading stay to be compared
    /// (`changed_while_read`)? Else the compare need not ask.
    pub(super) fn any_changed_while_read(&self) -> bool {
        !(self.none_said()
            && self.touched.is_empty()
            && self.touched_sets.is_empty()
            && self.removed.is_empty()
            && self.flushed.is_empty()
            && self.allowed.is_empty()
            && self.waiting.is_empty()
            && self.again.is_empty()
            && self.closed.is_empty())
    }

    /// The compare with the last run's record is done, or none follows
    /// this reading: what was kept for it goes.
    pub(super) fn compared(&mut self) {
        self.touched = Hosts::default();
        self.touched_sets = HashSet::new();
        self.taken = Hosts::default();
        self.compare = false;
    }

    /// A host taken in from its record (`Machine::take_in_records`): kept for the
    /// compare, if one follows.
    pub(super) fn took(&mut self, set: &str, addr: IpAddr) {
        if self.compare {
            let id = self.sets.id(set);
            self.taken.insert(id, addr);
        }
    }

    /// Did `pfknock allow` add `addr` to `set` while the reading ran?
    /// Then its line was said, and what the reading found of it says
    /// none learned late.
    pub(super) fn was_allowed(&self, set: &str, addr: IpAddr) -> bool {
        !self.allowed.is_empty() && self.allowed.contains_key(&(set.to_owned(), addr))
    }

    /// Did `pfknock revoke` (a close knock, a deletion by others) remove
    /// `addr` from `set` while the reading ran, or `pfknock flush` empty
    /// `set`, and no knock or allow bring it back since?
    pub(super) fn was_removed(&self, set: &str, addr: IpAddr) -> bool {
        if self.removed.is_empty() && self.flushed.is_empty() {
            return false;
        }
        let id = self.sets.find(set);
        let key = (set.to_owned(), addr);
        id.is_some_and(|id| self.removed.contains(id, addr))
            || (self.flushed.contains(set) && self.known(&key).is_none())
    }

    /// The reading is taken in: what was revoked during it is past (but
    /// for the compare with the last run's record that may follow a
    /// reading not after an overrun, `for_compare`: `touched`), and what
    /// was allowed is handed over, to be taken into the book. A
    /// transaction whose commit came after the reading is said by its
    /// events.
    pub(super) fn read(&mut self, for_compare: bool) -> HashMap<(String, IpAddr), Auth> {
        let removed = std::mem::take(&mut self.removed);
        let flushed = std::mem::take(&mut self.flushed);
        let (taken, compare) = (std::mem::take(&mut self.taken), self.compare);
        self.compared();
        if for_compare {
            self.compare = compare;
            self.touched = removed;
            for (id, addr) in taken.iter() {
                self.touched.insert(id, addr);
            }
            for (set, addr) in self.allowed.keys() {
                let id = self.sets.id(set);
                self.touched.insert(id, *addr);
            }
            self.touched_sets = flushed;
        }
        self.batch = Vec::new();
        self.reading = false;
        self.due = BTreeSet::new();
        std::mem::take(&mut self.allowed)
    }

    /// Was a knock of `addr` in `set` said as it came (its event in the
    /// queue, or taken by an overrun)? Then a reading takes its element
    /// in without a line learned late.
    pub(super) fn was_said(&mut self, set: &str, addr: IpAddr) -> bool {
        let key = (set.to_owned(), addr);
        self.dropped.remove(&key).is_some() || self.said(&key).is_some()
    }

    /// What was said of a host while the reading ran, if it is in its
    /// set (its record: when it was authorized, and its deadline).
    pub(super) fn said_record(&self, set: &str, addr: IpAddr) -> Option<Auth> {
        if self.said.len() == 0 {
            return None;
        }
        self.said.get(self.said.find(set)?, addr)
    }

    /// The records of the hosts of `set` said while the reading ran and
    /// in the set, in address order (`Book::iter_set`).
    pub(super) fn said_in<'a>(&'a self, set: &str) -> impl Iterator<Item = (IpAddr, Auth)> + 'a {
        let id = self.said.find(set);
        id.into_iter().flat_map(|id| self.said.iter_set(id))
    }

    /// The first deadline of those records (`said_in`).
    pub(super) fn said_first_due(&self, set: &str) -> Option<i64> {
        self.said.first_due(&[self.said.find(set)?])
    }

    /// A host someone else added, its event not heard during a reading
    /// (those heard are taken in with it: `take_records`): `Some` where a
    /// record of it is still held, which after the take-in is a knock's
    /// whose event has not come yet, with what the book is to hold of it
    /// (`None`: gone since).
    pub(super) fn said_added(&mut self, set: &str, addr: IpAddr) -> Option<Option<Auth>> {
        if self.none_said() {
            return None;
        }
        self.unsay(&(set.to_owned(), addr))
    }

    /// The records of hosts said as they came whose events are in no
    /// queue (others' changes: `Daemon::hear`), taken out set by set once
    /// the reading is taken in, for the book to take in (`take_in`);
    /// those said gone go, with nothing to take in. A knock's record
    /// stays for its event, which waits in the queue (`knocked`).
    pub(super) fn take_records(&mut self) -> Vec<(String, Taken)> {
        let knocked = std::mem::take(&mut self.knocked);
        let keys = knocked
            .iter()
            .map(|(id, a)| (self.sets.name(id).to_owned(), a));
        let keys: Vec<_> = keys.collect();
        let knocks: Vec<_> = (keys.into_iter())
            .filter_map(|k| Some((k.clone(), self.unsay(&k)?)))
            .collect();
        let said = &mut self.said;
        let records = (0..said.met()).map(|id| (said.name(id).to_owned(), said.take_set(id)));
        let records = records.collect();
        self.said = Book::default();
        self.said_gone = Hosts::default();
        for (key, a) in knocks {
            self.say_knock(key.clone());
            self.say(key, a);
        }
        records
    }

    /// Those said whose events an overrun took and whose elements its
    /// reading did not find: they went meanwhile.
    pub(super) fn said_dropped_went(&mut self) -> Vec<(String, IpAddr, Auth)> {
        let dropped = std::mem::take(&mut self.dropped);
        let went = dropped
            .into_iter()
            .filter_map(|((s, a), x)| Some((s, a, x?)));
        went.collect()
    }
}

#[cfg(test)]
mod tests;
