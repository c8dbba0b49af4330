//! The address plan of every test: node `k` is `node-k` with pod CIDRs
//! `10.244.<k>.0/24` and `fd00:10:244:<k>::/64`; addresses outside every
//! cluster come from the documentation ranges `203.0.113.0/24` and
//! `2001:db8::/32` (RFC 5737, RFC 3849), so no test address can be a real
//! host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPv4 range outsiders come from.
pub const OUTSIDERS_V4: &str = "203.0.113.0/24";
/// The IPv6 range outsiders come from.
pub const OUTSIDERS_V6: &str = "2001:db8::/32";

/// `node-<k>`.
pub fn node_name(k: u8) -> String {
    format!("node-{k}")
}

/// Node `k`'s IPv4 pod CIDR, `10.244.<k>.0/24`.
pub fn pod_cidr_v4(k: u8) -> String {
    format!("10.244.{k}.0/24")
}

/// Node `k`'s IPv6 pod CIDR, `fd00:10:244:<k>::/64`.
pub fn pod_cidr_v6(k: u8) -> String {
    format!("fd00:10:244:{k}::/64")
}

/// Pod address `host` on node `k`: `10.244.<k>.<host>`.
pub fn pod_v4(k: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, k, host))
}

/// Pod address `host` on node `k`: `fd00:10:244:<k>::<host>`.
pub fn pod_v6(k: u8, host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0x10,
        0x244,
        u16::from(k),
        0,
        0,
        0,
        host,
    ))
}

/// An IPv4 address outside the cluster: `203.0.113.<host>`.
pub fn outsider_v4(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, host))
}

/// An IPv6 address outside the cluster: `2001:db8::<host>`.
pub fn outsider_v6(host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_fall_in_their_ranges() {
        let v4: ipnet::IpNet = pod_cidr_v4(2).parse().expect("a CIDR");
        let v6: ipnet::IpNet = pod_cidr_v6(2).parse().expect("a CIDR");
        assert!(v4.contains(&pod_v4(2, 7)) && !v4.contains(&pod_v4(1, 7)));
        assert!(v6.contains(&pod_v6(2, 7)) && !v6.contains(&pod_v6(1, 7)));
        let out4: ipnet::IpNet = OUTSIDERS_V4.parse().expect("a CIDR");
        let out6: ipnet::IpNet = OUTSIDERS_V6.parse().expect("a CIDR");
        assert!(out4.contains(&outsider_v4(7)) && out6.contains(&outsider_v6(7)));
        assert_eq!(pod_v6(1, 0x200).to_string(), "fd00:10:244:1::200");
    }
}
