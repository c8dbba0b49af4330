//! Address sets as disjoint, merged, sorted ranges per family.
//!
//! The kernel never merges intervals and rejects overlaps (EEXIST), so
//! `ipBlock` minus `except`, unioned with pod addresses, is normalised here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An inclusive IPv4 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Range {
    /// First address.
    pub first: Ipv4Addr,
    /// Last address, inclusive.
    pub last: Ipv4Addr,
}

/// An inclusive IPv6 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Range {
    /// First address.
    pub first: Ipv6Addr,
    /// Last address, inclusive.
    pub last: Ipv6Addr,
}

/// A set of IPv4 and IPv6 addresses, kept as disjoint, non-adjacent, sorted
/// ranges per family (the canonical form: equal sets compare equal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

trait Bound: Copy + Ord {
    fn successor(self) -> Option<Self>;
    fn predecessor(self) -> Option<Self>;
}

impl Bound for u32 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn predecessor(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Bound for u128 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn predecessor(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalize<T: Bound>(ranges: &mut Vec<(T, T)>) {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for &(first, last) in ranges.iter() {
        match merged.last_mut() {
            Some(previous) if previous.1.successor().is_none_or(|next| first <= next) => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    *ranges = merged;
}

/// `ranges` minus `removed`; both normalised.
fn subtract<T: Bound>(ranges: &[(T, T)], removed: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    for &(first, last) in ranges {
        let mut cursor = Some(first);
        for &(cut_first, cut_last) in removed {
            let Some(start) = cursor else { break };
            if cut_last < start || cut_first > last {
                continue;
            }
            if cut_first > start {
                if let Some(before) = cut_first.predecessor() {
                    out.push((start, before));
                }
            }
            cursor = cut_last.successor().filter(|next| *next <= last);
        }
        if let Some(start) = cursor {
            out.push((start, last));
        }
    }
    out
}

fn contains<T: Bound>(ranges: &[(T, T)], value: T) -> bool {
    let index = ranges.partition_point(|(first, _)| *first <= value);
    index > 0 && ranges[index - 1].1 >= value
}

impl AddressSet {
    /// The addresses of one network.
    pub fn from_net(net: IpNet) -> Self {
        let mut set = Self::default();
        match net {
            IpNet::V4(net) => set
                .v4
                .push((u32::from(net.network()), u32::from(net.broadcast()))),
            IpNet::V6(net) => set
                .v6
                .push((u128::from(net.network()), u128::from(net.broadcast()))),
        }
        set
    }

    /// Adds many addresses, normalising once (inserting one by one would
    /// re-sort the set for every address).
    pub fn extend(&mut self, addresses: impl IntoIterator<Item = IpAddr>) {
        for address in addresses {
            match address {
                IpAddr::V4(v4) => self.v4.push((u32::from(v4), u32::from(v4))),
                IpAddr::V6(v6) => self.v6.push((u128::from(v6), u128::from(v6))),
            }
        }
        normalize(&mut self.v4);
        normalize(&mut self.v6);
    }

    /// Adds every address of `other`.
    pub fn union(&mut self, other: &AddressSet) {
        self.v4.extend_from_slice(&other.v4);
        self.v6.extend_from_slice(&other.v6);
        normalize(&mut self.v4);
        normalize(&mut self.v6);
    }

    /// Removes every address of `other`.
    pub fn subtract(&mut self, other: &AddressSet) {
        self.v4 = subtract(&self.v4, &other.v4);
        self.v6 = subtract(&self.v6, &other.v6);
    }

    /// Whether `address` is in the set.
    pub fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(address) => contains(&self.v4, u32::from(address)),
            IpAddr::V6(address) => contains(&self.v6, u128::from(address)),
        }
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The IPv4 ranges, sorted and disjoint.
    pub fn v4(&self) -> impl Iterator<Item = Ipv4Range> + '_ {
        self.v4.iter().map(|&(first, last)| Ipv4Range {
            first: first.into(),
            last: last.into(),
        })
    }

    /// The IPv6 ranges, sorted and disjoint.
    pub fn v6(&self) -> impl Iterator<Item = Ipv6Range> + '_ {
        self.v6.iter().map(|&(first, last)| Ipv6Range {
            first: first.into(),
            last: last.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn net(text: &str) -> AddressSet {
        AddressSet::from_net(text.parse().unwrap())
    }

    #[test]
    fn except_splits_the_block() {
        let mut block = net("172.17.0.0/16");
        block.subtract(&net("172.17.1.0/24"));
        let ranges: Vec<String> = block
            .v4()
            .map(|r| format!("{}-{}", r.first, r.last))
            .collect();
        assert_eq!(
            ranges,
            ["172.17.0.0-172.17.0.255", "172.17.2.0-172.17.255.255"]
        );
    }

    #[test]
    fn overlapping_and_adjacent_blocks_merge() {
        let mut set = net("10.0.0.0/25");
        set.union(&net("10.0.0.128/25"));
        set.union(&net("10.0.0.64/26"));
        assert_eq!(set, net("10.0.0.0/24"));
    }

    #[test]
    fn whole_space_survives_normalisation() {
        let mut set = net("0.0.0.0/0");
        set.extend(["1.2.3.4".parse().unwrap()]);
        set.union(&net("::/0"));
        assert_eq!(set.v4().count(), 1);
        assert!(set.contains("255.255.255.255".parse().unwrap()));
        assert!(set.contains("ffff::1".parse().unwrap()));
        set.subtract(&net("255.255.255.255/32"));
        assert!(!set.contains("255.255.255.255".parse().unwrap()));
        assert!(set.contains("255.255.255.254".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn set_operations_agree_with_membership(
            blocks in prop::collection::vec((any::<u32>(), 16u8..=32), 0..6),
            cuts in prop::collection::vec((any::<u32>(), 20u8..=32), 0..6),
            probes in prop::collection::vec(any::<u32>(), 1..20),
        ) {
            let nets = |list: &[(u32, u8)]| -> Vec<ipnet::Ipv4Net> {
                list.iter().map(|(a, p)| ipnet::Ipv4Net::new(Ipv4Addr::from(*a), *p).unwrap().trunc()).collect()
            };
            let (blocks, cuts) = (nets(&blocks), nets(&cuts));
            let mut set = AddressSet::default();
            for b in &blocks { set.union(&AddressSet::from_net(IpNet::V4(*b))); }
            for c in &cuts { set.subtract(&AddressSet::from_net(IpNet::V4(*c))); }
            let ranges: Vec<Ipv4Range> = set.v4().collect();
            for pair in ranges.windows(2) {
                prop_assert!(u32::from(pair[0].last).checked_add(1).unwrap() < u32::from(pair[1].first));
            }
            let mut probes = probes;
            probes.extend(blocks.iter().map(|b| u32::from(b.network())));
            for p in probes {
                let address = Ipv4Addr::from(p);
                let want = blocks.iter().any(|b| b.contains(&address)) && !cuts.iter().any(|c| c.contains(&address));
                prop_assert_eq!(set.contains(IpAddr::V4(address)), want);
            }
        }
    }
}
