//! Port sets (shared by content) and named-port sets (per rule, resolved per
//! destination pod).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nftpol_ir::{Element, KeyType, Value};
use nftpol_model::{NamedPortEndpoint, PortRange};

use super::{address_type, address_value, family_of, set, Builder};
use crate::catalogue::{Family, SetName};

/// A named-port set element: destination address, protocol, port.
pub(super) fn named_element(address: IpAddr, protocol: u8, port: u16) -> Element {
    Element::key(vec![
        address_value(address),
        Value::Proto(protocol),
        Value::Port(port),
    ])
}

/// The ports set of a rule, shared by every rule with the same ports: its
/// content is policy-derived, so it only changes when a policy does.
pub(super) fn add_ports_set(builder: &mut Builder, ranges: &[PortRange]) -> String {
    let elements = port_elements(ranges);
    let identity = elements
        .iter()
        .map(|element| format!("{:?}-{:?}", element.start(), element.end()))
        .collect::<Vec<_>>()
        .join(",");
    let key = SetName::Ports { identity };
    let name = key.name();
    if !builder.has_set(&name) {
        let mut ports = set(
            vec![KeyType::InetProto, KeyType::InetService],
            true,
            "destination ports of policy rules".to_owned(),
        );
        ports.elements = elements;
        builder.add_set(&key, ports);
    }
    builder.use_set(&name);
    name
}

/// A rule's named ports resolved per destination pod address, one family.
pub(super) fn add_named_set(
    builder: &mut Builder,
    key: &SetName,
    family: Family,
    named: &[NamedPortEndpoint],
    comment: &str,
) {
    let mut endpoints = set(
        vec![
            address_type(family),
            KeyType::InetProto,
            KeyType::InetService,
        ],
        false,
        format!("{comment}: named ports per destination pod"),
    );
    endpoints.elements = named
        .iter()
        .filter(|endpoint| family_of(endpoint.address) == family)
        .map(|endpoint| named_element(endpoint.address, endpoint.protocol.number(), endpoint.port))
        .collect();
    builder.add_set(key, endpoints);
    builder.use_set(&key.name());
}

/// Port ranges merged per protocol: pipapo rejects overlapping elements.
fn port_elements(ranges: &[PortRange]) -> BTreeSet<Element> {
    let mut by_protocol: BTreeMap<u8, Vec<(u16, u16)>> = BTreeMap::new();
    for range in ranges {
        by_protocol
            .entry(range.protocol.number())
            .or_default()
            .push((range.first, range.last));
    }
    let mut elements = BTreeSet::new();
    for (protocol, mut list) in by_protocol {
        list.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::new();
        for (first, last) in list {
            match merged.last_mut() {
                Some(previous) if previous.1.checked_add(1).is_none_or(|next| first <= next) => {
                    previous.1 = previous.1.max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        elements.extend(merged.into_iter().map(|(first, last)| {
            Element::range(
                vec![Value::Proto(protocol), Value::Port(first)],
                vec![Value::Proto(protocol), Value::Port(last)],
            )
        }));
    }
    elements
}
