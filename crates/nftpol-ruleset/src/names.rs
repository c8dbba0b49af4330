//! How the catalogue's names are spelled: hashes, truncation, the readable
//! part of per-policy names, and comments. Only [`crate::catalogue`] builds
//! names with these.
//!
//! Per-policy objects are `<role>-<HASH>-<namespace>/<name>/<tail>`: HASH is
//! the first 8 characters of the lowercase base32 SHA-256 of the full,
//! untruncated identity, so two identities whose readable parts truncate to
//! the same text still get different names, and a name is stable across
//! restarts. Only the readable part is truncated. `/` appears only in
//! per-policy names, so leftovers are recognisable.

use nftpol_model::PolicyId;

use crate::catalogue::Family;
use sha2::{Digest, Sha256};

/// The kernel's limit for chain and set names (`NFT_NAME_MAXLEN` 256, with
/// the terminating NUL).
pub const MAX_NAME_LEN: usize = 255;

/// The longest comment `nft` accepts (`NFT_USERDATA_MAXLEN` as nft enforces it).
pub const MAX_COMMENT_LEN: usize = 128;

/// A static set or map, family last: `local-pod-ips-v4`.
pub fn static_set(role: &str, family: Family) -> String {
    format!("{role}-{}", family.suffix())
}

/// A chain or set belonging to one policy: `<role>-<HASH>-<ns>/<name>/<tail>`.
pub fn policy_object(role: &str, policy: &PolicyId, tail: &str) -> String {
    owned_object(role, &policy.to_string(), &policy.to_string(), tail, None)
}

/// A per-family set of one policy: `<role>-<HASH>-<ns>/<name>/<tail>-v4`.
/// The family survives truncation: it tells the key type apart.
pub fn policy_family_set(role: &str, policy: &PolicyId, tail: &str, family: Family) -> String {
    owned_object(
        role,
        &policy.to_string(),
        &policy.to_string(),
        tail,
        Some(family),
    )
}

/// `<role>-<HASH>-<readable>/<tail>[-v4]`: HASH over `role identity tail
/// [family]`, only the readable part truncated, the family kept.
fn owned_object(
    role: &str,
    identity: &str,
    readable_part: &str,
    tail: &str,
    family: Option<Family>,
) -> String {
    let suffix = family
        .map(|family| format!(" {}", family.suffix()))
        .unwrap_or_default();
    let hashed = short_hash(&format!("{role} {identity} {tail}{suffix}"));
    let name = format!(
        "{role}-{hashed}-{}",
        readable(&format!("{readable_part}/{tail}"))
    );
    match family {
        None => truncate(name, MAX_NAME_LEN),
        Some(family) => format!("{}-{}", truncate(name, MAX_NAME_LEN - 3), family.suffix()),
    }
}

/// A chain or set belonging to one ClusterNetworkPolicy (cluster-scoped,
/// so no namespace): `<role>-<HASH>-<name>/<tail>`.
pub fn cluster_object(role: &str, policy: &str, tail: &str) -> String {
    owned_object(role, &format!("cnp/{policy}"), policy, tail, None)
}

/// A per-family set of one ClusterNetworkPolicy: `<role>-<HASH>-<name>/<tail>-v4`.
pub fn cluster_family_set(role: &str, policy: &str, tail: &str, family: Family) -> String {
    owned_object(role, &format!("cnp/{policy}"), policy, tail, Some(family))
}

/// The chain shared by every local pod that the same ClusterNetworkPolicies
/// of one tier select in one direction: `<direction>-<tier>-<HASH>`.
pub fn hashed_cluster_list(direction: &str, tier: &str, policies: &[String]) -> String {
    let identity = format!("{direction} {tier} {}", policies.join(" "));
    format!("{direction}-{tier}-{}", short_hash(&identity))
}

/// The chain shared by every local pod that the same policies isolate in
/// one direction: `<direction>-group-<HASH>`.
pub fn hashed_group(direction: &str, policies: &[PolicyId]) -> String {
    format!("{direction}-group-{}", group_log_id(direction, policies))
}

/// The id verdict logs of a group chain's default deny carry: the hash in
/// the chain's name ([`hashed_group`]).
pub fn group_log_id(direction: &str, policies: &[PolicyId]) -> String {
    let identity: Vec<String> = policies.iter().map(ToString::to_string).collect();
    short_hash(&format!("{direction} {}", identity.join(" ")))
}

/// The id verdict logs of a ClusterNetworkPolicy's rules in one direction
/// carry: the hash in its chain's name (`cluster_object("cnp", …)`).
pub fn cluster_log_id(policy: &str, direction: &str) -> String {
    short_hash(&format!("cnp cnp/{policy} {direction}"))
}

/// The id verdict logs of a policy's rules in one direction carry: the
/// hash in its chain's name (`policy_object("policy", policy, direction)`).
pub fn policy_log_id(policy: &PolicyId, direction: &str) -> String {
    short_hash(&format!("policy {policy} {direction}"))
}

/// A set shared by every rule that needs the same content, named by a hash
/// of its identity: `<role>-<HASH16>` or `<role>-<HASH16>-v4`. Sixteen base32
/// characters (80 bits) keep a collision, which would merge two different
/// sets, out of reach at any cluster size.
pub fn shared_set(role: &str, identity: &str, family: Option<Family>) -> String {
    let mut digest = data_encoding::BASE32_NOPAD
        .encode(&Sha256::digest(format!("{role} {identity}").as_bytes()))
        .to_ascii_lowercase();
    digest.truncate(16);
    match family {
        Some(family) => format!("{role}-{digest}-{}", family.suffix()),
        None => format!("{role}-{digest}"),
    }
}

/// `text` cut to at most `limit` bytes on a character boundary.
pub fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A comment cut to what nft accepts, control characters (which end an nft
/// statement) replaced by spaces and double quotes (which end its quoted
/// text: nft would list the kernel's comment as broken syntax) by single
/// ones, so the kernel holds exactly what `nft list` and `render` print.
pub fn comment(text: String) -> String {
    let text = if text.chars().any(|c| c.is_control() || c == '"') {
        text.chars()
            .map(|c| match c {
                '"' => '\'',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect()
    } else {
        text
    };
    truncate(text, MAX_COMMENT_LEN)
}

/// The readable part of a per-policy name: the characters nft takes in an
/// unquoted identifier (`a-z A-Z 0-9 / _ . -`) kept, anything else replaced
/// by `_`. Names the API server accepts pass unchanged; the hash, taken over
/// the untouched identity, keeps apart identities that read the same here.
fn readable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn short_hash(identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    let mut encoded = data_encoding::BASE32_NOPAD
        .encode(&digest)
        .to_ascii_lowercase();
    encoded.truncate(8);
    encoded
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
    fn names_are_stable_and_readable() {
        let name = policy_object("policy", &id("shop", "db-allow"), "ingress");
        assert_eq!(
            name,
            policy_object("policy", &id("shop", "db-allow"), "ingress")
        );
        assert!(
            name.starts_with("policy-") && name.ends_with("-shop/db-allow/ingress"),
            "{name}"
        );
        assert_eq!(
            name.len(),
            "policy-".len() + 8 + "-shop/db-allow/ingress".len()
        );
    }

    #[test]
    fn long_names_that_share_a_prefix_stay_distinct_and_within_limits() {
        let base = "a".repeat(250);
        let first = policy_family_set(
            "peers",
            &id("ns", &format!("{base}x")),
            "ingress0",
            Family::V4,
        );
        let second = policy_family_set(
            "peers",
            &id("ns", &format!("{base}y")),
            "ingress0",
            Family::V4,
        );
        assert!(first.len() <= MAX_NAME_LEN && second.len() <= MAX_NAME_LEN);
        assert_ne!(first, second);
        assert!(first.ends_with("-v4"));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("aé".to_owned(), 2), "a");
        assert_eq!(comment("x".repeat(300)).len(), MAX_COMMENT_LEN);
    }

    #[test]
    fn hostile_characters_never_reach_a_name() {
        let cases = [
            ("space and quote", id("x", "a b\"c"), "a_b_c"),
            ("statement end", id("x", "a;{}"), "a___"),
            ("newline", id("x", "a\nb"), "a_b"),
            ("non-ascii", id("x", "é"), "_"),
            (
                "valid names unchanged",
                id("x", "db-allow.v2"),
                "db-allow.v2",
            ),
        ];
        for (case, policy, want) in cases {
            for name in [
                policy_object("policy", &policy, "ingress"),
                policy_family_set("peers", &policy, "ingress0", Family::V6),
            ] {
                assert!(name.contains(&format!("-x/{want}/")), "case {case}: {name}");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c)),
                    "case {case}: {name}"
                );
            }
        }
        // Identities that read the same once sanitised keep distinct names.
        assert_ne!(
            policy_object("policy", &id("x", "a b"), "ingress"),
            policy_object("policy", &id("x", "a;b"), "ingress")
        );
        assert_eq!(comment("a\nb\tc".to_owned()), "a b c");
        assert_eq!(comment("rule \"x\"".to_owned()), "rule 'x'");
    }

    #[test]
    fn log_ids_are_the_hashes_in_chain_names() {
        let (a, b) = (id("x", "a"), id("y", "b"));
        let chain = policy_object("policy", &a, "egress");
        assert_eq!(
            chain,
            format!("policy-{}-x/a/egress", policy_log_id(&a, "egress"))
        );
        assert_eq!(
            hashed_group("ingress", &[a.clone(), b.clone()]),
            format!("ingress-group-{}", group_log_id("ingress", &[a.clone(), b]))
        );
        assert_ne!(policy_log_id(&a, "egress"), policy_log_id(&a, "ingress"));
        assert_eq!(
            cluster_object("cnp", "deny-imds", "egress"),
            format!(
                "cnp-{}-deny-imds/egress",
                cluster_log_id("deny-imds", "egress")
            )
        );
    }

    #[test]
    fn group_names_depend_on_every_policy() {
        let (a, b) = (id("x", "a"), id("x", "b"));
        assert_ne!(
            hashed_group("ingress", std::slice::from_ref(&a)),
            hashed_group("ingress", &[a.clone(), b.clone()])
        );
        assert_ne!(
            hashed_group("ingress", std::slice::from_ref(&a)),
            hashed_group("egress", &[a])
        );
    }
}
