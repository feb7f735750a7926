//! Rules that differ only in their ports, made one rule with the ports of
//! all of them.
//!
//! Each rule is a message of the load's transaction, and each `{ ... }`
//! in a rule an anonymous set, which the kernel binds by walking the whole
//! transaction (nf_tables_api.c: `__nft_set_trans_bind`, over
//! `commit_list`) after naming it by a walk over every set of the table
//! (`nf_tables_set_alloc_name`). One rule (and set) a service for each of
//! these made a load, and `nft -c`, quadratic in the services; as one rule
//! the ports are elements, which cost the kernel nothing of the kind
//! (docs/nft-kernel.md, "What a table of many services costs the kernel").
//!
//! Only rules whose order among themselves changes no verdict are merged
//! this way: those that all do the same to what they match (notrack, drop,
//! accept an established connection else drop), and the knock ports'
//! answers, whose ports no two services share (`config::check`).
#![forbid(unsafe_code)]

use std::collections::HashMap;

use crate::name::PortRange;

/// Rules by their text before and after the ports, in the order each was
/// first added.
#[derive(Default)]
pub(super) struct Merged {
    rules: Vec<(String, String, Vec<PortRange>)>,
    index: HashMap<(String, String), usize>,
}

impl Merged {
    /// The rule `{head}{ports}{tail}`, or these ports added to the one
    /// with this head and tail; no rule for no port (a service of signed
    /// knocks only has no knock port to answer on).
    pub(super) fn add(
        &mut self,
        head: String,
        ports: impl IntoIterator<Item = PortRange>,
        tail: String,
    ) {
        let ports: Vec<PortRange> = ports.into_iter().collect();
        if ports.is_empty() {
            return;
        }
        let key = (head, tail);
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.index.insert(key.clone(), self.rules.len());
                self.rules.push((key.0, key.1, Vec::new()));
                self.rules.len() - 1
            }
        };
        self.rules[i].2.extend(ports);
    }

    /// The rules, each with its ports in order, overlapping and adjacent
    /// ranges joined (as nft joins them in an anonymous set; so the text
    /// does not depend on the version of nft that reads it).
    pub(super) fn rules(self) -> Vec<String> {
        self.rules
            .into_iter()
            .map(|(head, tail, ports)| format!("{head}{}{tail}", ports_text(joined(ports))))
            .collect()
    }
}

/// Ranges sorted, those that overlap or touch made one.
pub(super) fn joined(mut v: Vec<PortRange>) -> Vec<PortRange> {
    v.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(l) if u32::from(r.lo.get()) <= u32::from(l.hi.get()) + 1 => {
                l.hi = l.hi.max(r.hi);
            }
            _ => out.push(r),
        }
    }
    out
}

/// A port, a range, or `{ ... }` of several, as nft reads them.
pub(super) fn ports_text(v: Vec<PortRange>) -> String {
    let v: Vec<String> = v.iter().map(PortRange::nft).collect();
    super::rules::list(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> PortRange {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_that_overlap_or_touch_are_one() {
        let v = joined(
            ["30", "20-25", "22", "26-28", "40-50", "45", "51", "60"]
                .map(r)
                .into(),
        );
        let t: Vec<String> = v.iter().map(PortRange::nft).collect();
        assert_eq!(t, ["20-28", "30", "40-51", "60"]);
        assert_eq!(joined(vec![r("65535"), r("65534")]), vec![r("65534-65535")]);
        assert_eq!(ports_text(vec![r("22")]), "22");
        assert_eq!(ports_text(vec![r("22"), r("80")]), "{ 22, 80 }");
    }

    #[test]
    fn rules_keep_the_order_they_were_first_added_in() {
        let mut m = Merged::default();
        m.add("a ".into(), [r("2")], " drop".into());
        m.add("b ".into(), [r("9")], " drop".into());
        m.add("a ".into(), [r("1")], " accept".into());
        m.add("a ".into(), [r("3"), r("1")], " drop".into());
        m.add("c ".into(), [], " drop".into());
        assert_eq!(m.rules(), ["a 1-3 drop", "b 9 drop", "a 1 accept"]);
    }
}
