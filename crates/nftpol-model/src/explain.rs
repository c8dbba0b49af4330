//! A person-readable account of one connection's verdict.

use std::fmt::Write;

use crate::cluster::Cluster;
use crate::evaluate::{evaluate, ClusterRuleRef, Connection, Decision};

/// Explains whether `connection` is allowed: the source's egress and the
/// destination's ingress, which policies isolate each side and which rule
/// allowed it.
pub fn explain(cluster: &Cluster, connection: &Connection) -> String {
    let (egress, ingress) = evaluate(cluster, connection);
    let allowed = egress.is_allowed() && ingress.is_allowed();
    let mut out = format!(
        "{} {} -> {} port {}/{}\n",
        if allowed { "ALLOWED" } else { "DENIED" },
        connection.source,
        connection.destination,
        connection.port,
        connection.protocol
    );
    for (side, decision) in [
        ("egress of source", &egress),
        ("ingress of destination", &ingress),
    ] {
        // `let _ =`: writing to a String cannot fail.
        let _ = writeln!(out, "  {side}: {}", describe(decision));
    }
    out
}

fn describe(decision: &Decision) -> String {
    match decision {
        Decision::NotAPod => "not a pod address: no NetworkPolicy applies".to_owned(),
        Decision::NotIsolated { pod } => {
            format!("{pod} is selected by no policy of this direction: allowed")
        }
        Decision::Allowed { pod, policy, rule } => {
            format!("{pod} is isolated; allowed by {policy} rule [{rule}]")
        }
        Decision::Denied { pod, isolated_by } => {
            let names: Vec<String> = isolated_by.iter().map(ToString::to_string).collect();
            format!(
                "{pod} is isolated by {} and no rule allows it: denied",
                names.join(", ")
            )
        }
        Decision::OwnNode { pod } => {
            format!("{pod} and its own node: NetworkPolicy always allows it")
        }
        Decision::Cluster { pod, rule } => {
            let verdict = if decision.is_allowed() {
                "allowed"
            } else {
                "denied"
            };
            format!("{pod}: {}: {verdict}", describe_rule(rule))
        }
        Decision::Passed { rule, then } => {
            format!("{} → {}", describe_rule(rule), describe(then))
        }
    }
}

/// `Admin cnp/deny-imds rule 0 "block-metadata" Deny`.
fn describe_rule(rule: &ClusterRuleRef) -> String {
    let name = rule
        .name
        .as_ref()
        .map(|name| format!(" {name:?}"))
        .unwrap_or_default();
    format!(
        "{} cnp/{} rule {}{name} {}",
        rule.tier, rule.policy, rule.index, rule.action
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests;
    use crate::vocabulary::Protocol;

    #[test]
    fn names_the_isolating_policy_and_the_allowing_rule() {
        let cluster = manifests::parse(
            r"
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {role: db}}
status: {phase: Running, podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {role: web}}
status: {phase: Running, podIP: 10.244.1.11}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-allow, namespace: shop}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress: [{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: 5432}]}]
",
        )
        .unwrap()
        .cluster;
        let connection = |port| Connection {
            source: "10.244.1.11".parse().unwrap(),
            destination: "10.244.1.10".parse().unwrap(),
            protocol: Protocol::Tcp,
            port,
        };
        let allowed = explain(&cluster, &connection(5432));
        assert!(allowed.starts_with("ALLOWED"), "{allowed}");
        assert!(
            allowed.contains("shop/web is selected by no policy of this direction"),
            "{allowed}"
        );
        assert!(
            allowed.contains("shop/db is isolated; allowed by shop/db-allow rule [0]"),
            "{allowed}"
        );
        let denied = explain(&cluster, &connection(80));
        assert!(denied.starts_with("DENIED"), "{denied}");
        assert!(
            denied.contains("shop/db is isolated by shop/db-allow and no rule allows it"),
            "{denied}"
        );
    }
}
