//! A person-readable account of one connection's verdict.

use std::fmt::Write;

use crate::cluster::Cluster;
use crate::evaluate::{evaluate, Connection, Decision};

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
    }
}
