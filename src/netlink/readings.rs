//! Readings of a set by dump, as the daemon takes them: each element with
//! its deadline, in address order, so that two readings compare and join
//! in one pass and at the size of the addresses (no hash set of a million
//! beside them).

pub use crate::kevents::Deadline;

/// A dump's elements in address order, each address once: of an address
/// that came twice (a dump during a resize repeats some), the deadline of
/// its later datagram.
pub(super) fn in_address_order(mut d: Vec<Deadline>) -> Vec<Deadline> {
    // Stable: of an address twice, the later one stays after the earlier.
    d.sort_by_key(|x| x.0);
    d.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = later.1;
        }
        same
    });
    d
}

/// Do two address-ordered readings hold the same addresses?
pub(super) fn same_addresses(a: &[Deadline], b: &[Deadline]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}

/// Two address-ordered readings as one, in address order; an address in
/// both with the deadline of the later one (`b`).
pub(super) fn union_later_wins(a: Vec<Deadline>, b: Vec<Deadline>) -> Vec<Deadline> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 < y.0 => out.extend(a.next()),
            (Some(x), Some(y)) if x.0 == y.0 => {
                a.next();
                out.extend(b.next());
            }
            (_, Some(_)) => out.extend(b.next()),
            (Some(_), None) => out.extend(a.next()),
            (None, None) => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    fn addr(i: u16) -> IpAddr {
        if i.is_multiple_of(3) {
            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i])
        } else {
            IpAddr::from([198, 18, (i >> 8) as u8, i as u8])
        }
    }

    /// A dump as it comes: addresses in any order, some twice.
    fn dump() -> impl Strategy<Value = Vec<Deadline>> {
        proptest::collection::vec((0u16..64, proptest::option::of(0i64..1000)), 0..80)
            .prop_map(|v| v.into_iter().map(|(i, d)| (addr(i), d)).collect())
    }

    /// The reference: a map filled in the order things came.
    fn later_wins<'a>(dumps: impl IntoIterator<Item = &'a Vec<Deadline>>) -> Vec<Deadline> {
        let mut m = BTreeMap::new();
        for d in dumps {
            m.extend(d.iter().copied());
        }
        m.into_iter().collect()
    }

    proptest! {
        #[test]
        fn a_dump_in_order_keeps_each_address_once_with_its_last_deadline(d in dump()) {
            prop_assert_eq!(in_address_order(d.clone()), later_wins([&d]));
        }

        #[test]
        fn two_readings_join_with_the_later_ones_deadline(a in dump(), b in dump()) {
            let (x, y) = (in_address_order(a.clone()), in_address_order(b.clone()));
            let both = later_wins([&a, &b]);
            let same = x.iter().map(|e| e.0).eq(y.iter().map(|e| e.0));
            prop_assert_eq!(same_addresses(&x, &y), same);
            prop_assert_eq!(union_later_wins(x, y), both);
        }
    }

    #[test]
    fn readings_that_differ_in_one_address_are_not_the_same() {
        let a = vec![(addr(1), Some(5)), (addr(2), None)];
        let b = vec![(addr(1), Some(9)), (addr(4), None)];
        assert!(!same_addresses(&a, &b));
        assert!(!same_addresses(&a, &a[..1]));
        assert!(same_addresses(&a, &[(addr(1), None), (addr(2), Some(1))]));
    }
}
