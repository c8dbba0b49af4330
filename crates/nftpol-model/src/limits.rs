//! Bounds on what one NetworkPolicy may cost the agent.
//!
//! Any tenant may create NetworkPolicies in its namespaces, and the API
//! server bounds an object only by its size (about 1.5 MB in etcd). Without
//! bounds, one object could make every reconcile slow (selector matching is
//! pods × peers × terms; `ipBlock` interval math is quadratic in `except`
//! entries) or make the kernel batch huge, for every tenant on the node.
//!
//! A policy over any bound is rejected with a [`ModelError`](crate::ModelError)
//! naming the field, and fails closed: it still isolates the pods it selects
//! (its whole namespace when its own `podSelector` is over a bound) and
//! allows nothing. Every other policy still applies. The counts are checked
//! on the raw object, before any interval math or selector matching.
//!
//! The bounds sit far above what real policies use (upstream e2e and the
//! Kubernetes documentation use a handful of rules, peers and ports) and far
//! below what would hurt: 16,384 elements of one policy are about 0.6 MB of
//! netlink batch.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::policy::PolicyId;

/// Rules per policy, `ingress` and `egress` together.
pub const MAX_RULES_PER_POLICY: usize = 128;
/// Peers (`from`/`to` entries) per rule.
pub const MAX_PEERS_PER_RULE: usize = 128;
/// `ports` entries per rule.
pub const MAX_PORTS_PER_RULE: usize = 128;
/// Terms of one label selector: each `matchLabels` entry counts one, each
/// `matchExpressions` entry counts its number of values (at least one).
pub const MAX_SELECTOR_TERMS: usize = 64;
/// Interval-set elements one rule's `ipBlock`s may contribute: each
/// `ipBlock` counts one plus its `except` entries (an upper bound on the
/// ranges it leaves, so the bound holds before any interval math runs).
pub const MAX_BLOCK_ELEMENTS_PER_RULE: usize = 4096;
/// The same count over all rules of one policy.
pub const MAX_BLOCK_ELEMENTS_PER_POLICY: usize = 16_384;
/// Longest namespace name: a DNS-1123 label, as the API server enforces.
pub const MAX_NAMESPACE_LEN: usize = 63;
/// Longest policy name: a DNS-1123 subdomain, as the API server enforces.
pub const MAX_NAME_LEN: usize = 253;

/// The first bound `spec` exceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The field path, e.g. `spec.ingress[0].from`.
    pub(crate) field: String,
    /// What is over which bound.
    pub(crate) problem: String,
}

impl Violation {
    /// Whether the policy's own `podSelector` is over a bound, so it cannot
    /// tell which pods it selects.
    pub(crate) fn is_pod_selector(&self) -> bool {
        self.field == "spec.podSelector"
    }
}

fn over(field: String, what: &str, count: usize, limit: usize) -> Option<Violation> {
    (count > limit).then(|| Violation {
        field,
        problem: format!("{count} {what} exceed the limit of {limit}"),
    })
}

/// The terms of `selector`, as [`MAX_SELECTOR_TERMS`] counts them.
fn selector_terms(selector: &LabelSelector) -> usize {
    let labels = selector.match_labels.as_ref().map_or(0, BTreeMap::len);
    let expressions: usize = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|expression| expression.values.as_ref().map_or(0, Vec::len).max(1))
        .sum();
    labels + expressions
}

fn check_selector(field: String, selector: Option<&LabelSelector>) -> Option<Violation> {
    selector.and_then(|selector| {
        over(
            field,
            "selector terms",
            selector_terms(selector),
            MAX_SELECTOR_TERMS,
        )
    })
}

/// Bound elements of one `ipBlock` peer (zero for selector peers).
fn block_elements(peer: &NetworkPolicyPeer) -> usize {
    peer.ip_block
        .as_ref()
        .map_or(0, |block| 1 + block.except.as_ref().map_or(0, Vec::len))
}

/// Checks one rule's peers and ports; returns its ipBlock element count.
fn check_rule(
    at: &str,
    peers_name: &str,
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: usize,
) -> Result<usize, Violation> {
    let peers = peers.map_or(&[][..], Vec::as_slice);
    if let Some(violation) = over(
        format!("{at}.{peers_name}"),
        "peers",
        peers.len(),
        MAX_PEERS_PER_RULE,
    )
    .or_else(|| over(format!("{at}.ports"), "ports", ports, MAX_PORTS_PER_RULE))
    {
        return Err(violation);
    }
    for (index, peer) in peers.iter().enumerate() {
        let field = format!("{at}.{peers_name}[{index}]");
        if let Some(violation) =
            check_selector(format!("{field}.podSelector"), peer.pod_selector.as_ref()).or_else(
                || {
                    check_selector(
                        format!("{field}.namespaceSelector"),
                        peer.namespace_selector.as_ref(),
                    )
                },
            )
        {
            return Err(violation);
        }
    }
    let elements = peers.iter().map(block_elements).sum();
    match over(
        format!("{at}.{peers_name}"),
        "ipBlock elements (one per ipBlock plus one per except)",
        elements,
        MAX_BLOCK_ELEMENTS_PER_RULE,
    ) {
        Some(violation) => Err(violation),
        None => Ok(elements),
    }
}

/// The first bound `spec` exceeds, if any. Linear in the object's size.
pub(crate) fn check(spec: &NetworkPolicySpec) -> Option<Violation> {
    if let Some(violation) =
        check_selector("spec.podSelector".to_owned(), spec.pod_selector.as_ref())
    {
        return Some(violation);
    }
    let ingress = spec.ingress.as_deref().unwrap_or_default();
    let egress = spec.egress.as_deref().unwrap_or_default();
    if let Some(violation) = over(
        "spec".to_owned(),
        "rules (ingress and egress)",
        ingress.len() + egress.len(),
        MAX_RULES_PER_POLICY,
    ) {
        return Some(violation);
    }
    let mut elements = 0;
    let ingress_rules = ingress.iter().enumerate().map(|(index, rule)| {
        check_rule(
            &format!("spec.ingress[{index}]"),
            "from",
            rule.from.as_ref(),
            rule.ports.as_ref().map_or(0, Vec::len),
        )
    });
    let egress_rules = egress.iter().enumerate().map(|(index, rule)| {
        check_rule(
            &format!("spec.egress[{index}]"),
            "to",
            rule.to.as_ref(),
            rule.ports.as_ref().map_or(0, Vec::len),
        )
    });
    for result in ingress_rules.chain(egress_rules) {
        match result {
            Ok(count) => elements += count,
            Err(violation) => return Some(violation),
        }
    }
    over(
        "spec".to_owned(),
        "ipBlock elements (one per ipBlock plus one per except)",
        elements,
        MAX_BLOCK_ELEMENTS_PER_POLICY,
    )
}

/// Why `id` is not a name the API server would accept, if it is not:
/// the namespace must be a DNS-1123 label and the name a DNS-1123
/// subdomain. Other names could not come from a real cluster, and their
/// characters (`/`, spaces, quotes) would make nftables names ambiguous.
pub(crate) fn check_identity(id: &PolicyId) -> Option<Violation> {
    if !is_dns_label(&id.namespace, MAX_NAMESPACE_LEN) {
        return Some(Violation {
            field: "metadata.namespace".to_owned(),
            problem: format!(
                "{:?} is not a DNS-1123 label (at most {MAX_NAMESPACE_LEN} of a-z, 0-9, '-')",
                id.namespace
            ),
        });
    }
    let subdomain = id.name.len() <= MAX_NAME_LEN
        && id
            .name
            .split('.')
            .all(|label| is_dns_label(label, MAX_NAME_LEN));
    (!subdomain).then(|| Violation {
        field: "metadata.name".to_owned(),
        problem: format!(
            "{:?} is not a DNS-1123 subdomain (at most {MAX_NAME_LEN} of a-z, 0-9, '-', '.')",
            id.name
        ),
    })
}

fn is_dns_label(text: &str, limit: usize) -> bool {
    let bytes = text.as_bytes();
    let edge =
        |byte: Option<&u8>| byte.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !bytes.is_empty()
        && bytes.len() <= limit
        && edge(bytes.first())
        && edge(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(namespace: &str, name: &str) -> PolicyId {
        PolicyId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn identities_follow_the_api_server() {
        let cases = [
            ("plain", id("shop", "db-allow"), None),
            ("dotted name", id("shop", "a.b-c.d"), None),
            ("longest", id(&"n".repeat(63), &"a".repeat(253)), None),
            (
                "namespace too long",
                id(&"n".repeat(64), "a"),
                Some("metadata.namespace"),
            ),
            (
                "name too long",
                id("x", &"a".repeat(254)),
                Some("metadata.name"),
            ),
            ("slash", id("x", "a/b"), Some("metadata.name")),
            (
                "slash in namespace",
                id("x/y", "a"),
                Some("metadata.namespace"),
            ),
            ("upper case", id("x", "A"), Some("metadata.name")),
            ("empty name", id("x", ""), Some("metadata.name")),
            ("empty label", id("x", "a..b"), Some("metadata.name")),
            ("dash edge", id("x", "-a"), Some("metadata.name")),
            ("space", id("x", "a b"), Some("metadata.name")),
            ("quote", id("x", "a\"b"), Some("metadata.name")),
        ];
        for (name, identity, want) in cases {
            let got = check_identity(&identity);
            assert_eq!(
                got.as_ref().map(|violation| violation.field.as_str()),
                want,
                "case {name}: {got:?}"
            );
        }
    }

    #[test]
    fn selector_terms_count_values() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"a": "1", "b": "2"},
            "matchExpressions": [
                {"key": "c", "operator": "In", "values": ["1", "2", "3"]},
                {"key": "d", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert_eq!(selector_terms(&selector), 6);
    }
}
