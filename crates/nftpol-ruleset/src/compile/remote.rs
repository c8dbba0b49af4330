//! Remote pods' changes as element-only diffs, without a full model.
//!
//! The model decides which sets a remote pod's addresses leave and join
//! ([`RemotePods::apply`], or `None` when the change needs a full model);
//! this module names those sets and elements exactly as [`super::compile`]
//! does and diffs them against the committed ruleset.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nftpol_ir::diff::{Change, Diff};
use nftpol_ir::{Element, Ruleset};
use nftpol_model::{Direction, Membership, PodChange, RemotePods};

use super::ports::named_element;
use super::{address_value, family_of};
use crate::catalogue::SetName;

/// The element-only diff that brings `committed` (compiled from the model
/// `remote` came with) to what a full compile would give after `changes`
/// to remote pods, or `None` when a change needs the full model. On `Some`,
/// `remote` counts the changes.
pub fn pod_delta(
    remote: &mut RemotePods,
    changes: &[PodChange],
    committed: &Ruleset,
) -> Option<Diff<'static>> {
    let delta = remote.apply(changes)?;
    let elements = |memberships: &BTreeSet<(Membership, IpAddr)>| -> BTreeSet<(String, Element)> {
        memberships
            .iter()
            .map(|(membership, address)| {
                let (set, element) = membership_element(membership, *address);
                (set.name(), element)
            })
            .collect()
    };
    Some(element_diff(
        committed,
        &elements(&delta.removed),
        &elements(&delta.added),
    ))
}

/// The set and element a remote pod's address gets for one membership.
fn membership_element(membership: &Membership, address: IpAddr) -> (SetName, Element) {
    let family = family_of(address);
    match membership {
        Membership::Peer { identity } => (
            SetName::PodPeers {
                identity: identity.clone(),
                family,
            },
            Element::key(vec![address_value(address)]),
        ),
        Membership::NamedEgress {
            policy,
            rule,
            protocol,
            port,
        } => (
            SetName::NamedPorts {
                policy: policy.clone(),
                direction: Direction::Egress,
                rule: *rule,
                family,
            },
            named_element(address, protocol.number(), *port),
        ),
    }
}

/// Deletes of what `committed` holds and adds of what it lacks, in sets it
/// has (a membership's set exists only where a local pod's policy uses it);
/// an element both removed and added stays.
fn element_diff(
    committed: &Ruleset,
    removed: &BTreeSet<(String, Element)>,
    added: &BTreeSet<(String, Element)>,
) -> Diff<'static> {
    let mut deletes: BTreeMap<&str, Vec<Element>> = BTreeMap::new();
    let mut adds: BTreeMap<&str, Vec<Element>> = BTreeMap::new();
    for (set, element) in removed.difference(added) {
        if committed
            .sets
            .get(set)
            .is_some_and(|held| held.elements.contains(element))
        {
            deletes.entry(set).or_default().push(element.clone());
        }
    }
    for (set, element) in added.difference(removed) {
        if committed
            .sets
            .get(set)
            .is_some_and(|held| !held.elements.contains(element))
        {
            adds.entry(set).or_default().push(element.clone());
        }
    }
    let mut changes: Vec<Change> = deletes
        .into_iter()
        .map(|(set, elements)| Change::DeleteElements {
            set: set.to_owned(),
            elements: elements.into(),
        })
        .collect();
    changes.extend(adds.into_iter().map(|(set, elements)| Change::AddElements {
        set: set.to_owned(),
        elements: elements.into(),
    }));
    Diff { changes }
}
