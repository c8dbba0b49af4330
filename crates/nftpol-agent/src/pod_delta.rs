//! Remote pod changes as set element changes, without a full model.
//!
//! A pod on another node only ever appears in this node's ruleset as an
//! address in pod-address sets (selector peers, egress named ports), so its
//! add, relabel or delete changes elements and nothing else — unless it
//! touches what the full model decides structurally. Those cases are
//! refused here and take the full path: a pod scheduled on this node or
//! holding an address in its pod CIDRs, an address another pod also claims
//! (the model's owner rule), and the first or last pod of an address family
//! (pod-address sets exist only for families in use).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use nftpol_ir::diff::{Change, Diff};
use nftpol_ir::{Element, Ruleset};
use nftpol_model::{NodeModel, PodMemberships, PodView, Snapshot};
use nftpol_ruleset::compile::membership_element;

/// One pod's change since the last reconcile, as the pod store saw it.
#[derive(Debug, Clone)]
pub struct PodChange {
    /// The pod before (`None`: created).
    pub before: Option<Arc<PodView>>,
    /// The pod after (`None`: deleted).
    pub after: Option<Arc<PodView>>,
}

/// What the last full model knew about pods, kept up to date by element
/// updates.
pub(crate) struct PodState {
    memberships: PodMemberships,
    /// Counted pods claiming each address.
    claims: HashMap<IpAddr, u32>,
    /// Addresses with a claim, per family (v4, v6).
    claimed_per_family: [usize; 2],
}

fn family_index(address: IpAddr) -> usize {
    usize::from(address.is_ipv6())
}

impl PodState {
    /// The state after a full model of `snapshot`.
    pub(crate) fn new(snapshot: &Snapshot, model: &NodeModel) -> Self {
        let mut claims: HashMap<IpAddr, u32> = HashMap::new();
        for pod in snapshot.pods.iter().filter(|pod| pod.counts()) {
            for address in &pod.ips {
                *claims.entry(*address).or_default() += 1;
            }
        }
        let mut claimed_per_family = [0; 2];
        for address in claims.keys() {
            claimed_per_family[family_index(*address)] += 1;
        }
        Self {
            memberships: PodMemberships::new(snapshot, model),
            claims,
            claimed_per_family,
        }
    }

    /// The element changes that bring `committed` to what a full model
    /// would give after `changes`, or `None` when one of them needs the
    /// full path. On `Some`, the state already counts the changes.
    pub(crate) fn element_changes(
        &mut self,
        changes: &[PodChange],
        committed: &Ruleset,
    ) -> Option<Diff> {
        let mut claim_deltas: HashMap<IpAddr, i64> = HashMap::new();
        let mut removed = BTreeSet::new();
        let mut added = BTreeSet::new();
        for change in changes {
            for (pod, sign) in [(&change.before, -1), (&change.after, 1)] {
                let Some(pod) = pod else { continue };
                if self.memberships.is_local(pod) {
                    return None;
                }
                if !pod.counts() {
                    continue;
                }
                for address in &pod.ips {
                    let delta = claim_deltas.entry(*address).or_default();
                    let held = i64::from(self.claims.get(address).copied().unwrap_or(0)) + *delta;
                    // Removing: this pod must be the only claimant; adding: nobody may claim it.
                    if held != i64::from(sign == -1) {
                        return None;
                    }
                    *delta += sign;
                }
                let elements = self
                    .memberships
                    .of(pod)
                    .into_iter()
                    .map(|(membership, address)| {
                        let (set, element) = membership_element(&membership, address);
                        (set.name(), element)
                    });
                if sign < 0 {
                    removed.extend(elements);
                } else {
                    added.extend(elements);
                }
            }
        }
        let mut claimed_per_family = self.claimed_per_family;
        for (address, delta) in &claim_deltas {
            let before = self.claims.get(address).copied().unwrap_or(0);
            let after = i64::from(before) + delta;
            match (before > 0, after > 0) {
                (false, true) => claimed_per_family[family_index(*address)] += 1,
                (true, false) => claimed_per_family[family_index(*address)] -= 1,
                _ => {}
            }
        }
        let families_in_use = |counts: [usize; 2]| counts.map(|count| count > 0);
        if families_in_use(claimed_per_family) != families_in_use(self.claimed_per_family) {
            return None;
        }
        for (address, delta) in claim_deltas {
            let count = self.claims.entry(address).or_default();
            // The checks above keep every count at 0 or 1.
            *count = u32::try_from(i64::from(*count) + delta).unwrap_or(0);
            if *count == 0 {
                self.claims.remove(&address);
            }
        }
        self.claimed_per_family = claimed_per_family;
        Some(element_diff(committed, &removed, &added))
    }
}

/// Deletes of what `committed` holds and adds of what it lacks, in sets it
/// has; an element both removed and added stays.
fn element_diff(
    committed: &Ruleset,
    removed: &BTreeSet<(String, Element)>,
    added: &BTreeSet<(String, Element)>,
) -> Diff {
    let mut deletes: BTreeMap<&str, Vec<Element>> = BTreeMap::new();
    let mut adds: BTreeMap<&str, Vec<Element>> = BTreeMap::new();
    for entry in removed.difference(added) {
        let (set, element) = entry;
        if committed
            .sets
            .get(set)
            .is_some_and(|held| held.elements.contains(element))
        {
            deletes.entry(set).or_default().push(element.clone());
        }
    }
    for entry in added.difference(removed) {
        let (set, element) = entry;
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
            elements,
        })
        .collect();
    changes.extend(adds.into_iter().map(|(set, elements)| Change::AddElements {
        set: set.to_owned(),
        elements,
    }));
    Diff { changes }
}
