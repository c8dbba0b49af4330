//! Measurement 8: what ClusterNetworkPolicy costs (issue #12), against the
//! same run's figures without any.
//!
//! - **Full sync**: the generated cluster ([`crate::generate`]) with and
//!   without [`cluster_policies`] on top (by default 100 CNPs × 10 rules
//!   over 1,000 NetworkPolicies): model, compile and diff once, then the
//!   commit in a fresh namespace per run, as measurement 2 does.
//! - **New connections**: the lab of [`crate::dataplane`] on the same
//!   cluster, nftpol's ruleset with and without [`admin_guards`] (by
//!   default 10 Admin CNPs selecting both bench pods, each with an ingress
//!   and an egress Deny on the bench port that the bench connection does
//!   not match), interleaved over several rounds ([`crate::rounds`]). The
//!   SYN therefore crosses every guard of both tiers' chains before
//!   NetworkPolicy allows it: the per-packet work of a pod that many CNPs
//!   select.
//! - **Change to enforced**: on a table holding the cluster with its CNPs,
//!   one Admin CNP added, then removed again, several times, each through
//!   the agent's `Reconciler` (a full model, as a CNP event takes): from the
//!   store's new snapshot to the kernel's ack. The agent adds its coalescing
//!   delay (`--coalesce-ms`, 20 ms by default) and the watch's delivery.

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use nftpol_agent::Reconciler;
use nftpol_ir::diff::diff;
use nftpol_ir::Ruleset;
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use nftpol_model::{resolve_snapshot, Cluster, Snapshot};
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::compile::{compile, CompileOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::commit::commit_in_fresh_netns;
use crate::compile::counts;
use crate::generate::{self, Shape, HTTP_PORT};
use crate::lab::{self, Tables};
use crate::machine::{load_average, Load};
use crate::measure::{timed, Summary};
use crate::netns::in_fresh_netns;
use crate::rounds::{self, Point, Schedule, Setup, Trial};

/// How many ClusterNetworkPolicies, and how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPolicyShape {
    /// Generated CNPs for the full sync (both tiers).
    pub cluster_policies: usize,
    /// Rules per generated CNP (ingress and egress alternately).
    pub rules: usize,
    /// Admin CNPs selecting both bench pods in the lab.
    pub guards: usize,
}

/// One full sync of node-1, measured once for the model and the compiler
/// and per run for the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncFigures {
    /// CNPs in the cluster.
    pub cluster_policies: usize,
    /// `resolve_snapshot` for node-1.
    pub resolve_ms: f64,
    /// `compile`.
    pub compile_ms: f64,
    /// `diff(None, ir)`.
    pub diff_ms: f64,
    /// Rules.
    pub rules: usize,
    /// Chains.
    pub chains: usize,
    /// Sets and maps.
    pub sets: usize,
    /// Set and map elements.
    pub elements: usize,
    /// Netlink batch bytes.
    pub batch_bytes: usize,
    /// Netlink messages.
    pub batch_messages: usize,
    /// `KernelDataplane::apply` to the kernel's ack, in a fresh namespace per run.
    pub commit: Summary,
}

impl SyncFigures {
    /// Model + compile + diff + commit (median).
    pub fn full_sync_ms(&self) -> f64 {
        self.resolve_ms + self.compile_ms + self.diff_ms + self.commit.p50
    }
}

/// What measurement 8 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterPolicyResult {
    /// Generated pods.
    pub pods: usize,
    /// Generated NetworkPolicies.
    pub policies: usize,
    /// The CNPs added.
    pub shape: ClusterPolicyShape,
    /// Without CNPs, then with [`ClusterPolicyShape::cluster_policies`].
    pub syncs: Vec<SyncFigures>,
    /// One Admin CNP added to (or removed from) the cluster with its CNPs,
    /// snapshot to kernel ack through the `Reconciler`, ms.
    pub change_to_enforced: Summary,
    /// Rounds and traffic per round of the lab.
    pub schedule: Schedule,
    /// nftpol without CNPs first, then with the Admin guards.
    pub points: Vec<Point>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
    /// The machine's load around the lab measurement.
    pub load: Load,
}

impl ClusterPolicyResult {
    /// The lab point without CNPs.
    pub fn baseline(&self) -> Option<&Point> {
        self.points
            .iter()
            .find(|point| point.setup == Setup::NFTPOL)
    }

    /// The lab point with the Admin guards.
    pub fn guarded(&self) -> Option<&Point> {
        self.points
            .iter()
            .find(|point| point.setup == Setup::NftpolAdminGuards)
    }
}

fn team(namespace: usize) -> String {
    format!("team-{namespace}")
}

/// Rule `r` of generated CNP `k`: ingress for even `r`, egress for odd;
/// peers by namespace, by pod, or (egress) by network; TCP ports, a UDP
/// range or every protocol.
fn generated_rule(k: usize, r: usize, admin: bool, namespaces: usize) -> serde_json::Value {
    let action = if admin {
        ["Deny", "Accept", "Pass"][r % 3]
    } else {
        ["Deny", "Accept"][r % 2]
    };
    let peer_team = team((k + r) % namespaces);
    let peer = match r % 4 {
        0 | 2 => json!({"namespaces": {"matchLabels": {"team": peer_team}}}),
        1 => json!({"networks": [format!("198.18.{}.0/24", (k * 10 + r) % 256)]}),
        _ => json!({"pods": {
            "namespaceSelector": {"matchLabels": {"team": peer_team}},
            "podSelector": {"matchLabels": {"app": format!("app-{}", r % generate::APPS)}},
        }}),
    };
    let port = u16::try_from(r % 100).unwrap_or(0);
    let protocols = match r % 3 {
        0 => json!([{"tcp": {"destinationPort": {"number": 8000 + port}}}]),
        1 => json!([{"udp": {"destinationPort": {"range": {"start": 9000, "end": 9001 + port}}}}]),
        _ => json!(null),
    };
    let peers_key = if r.is_multiple_of(2) { "from" } else { "to" };
    let mut rule = json!({"name": format!("rule-{r}"), "action": action, peers_key: [peer]});
    if !protocols.is_null() {
        rule["protocols"] = protocols;
    }
    rule
}

/// `count` CNPs of `rules` rules each over a cluster of `namespaces`
/// application namespaces: both tiers alternately, distinct priorities
/// within a tier (no ties), subjects by namespace, by pod, and every
/// namespace (one in five, as cluster-wide guardrails are).
///
/// # Panics
///
/// If a generated object does not deserialise (a bug in this generator).
pub fn cluster_policies(
    count: usize,
    rules: usize,
    namespaces: usize,
) -> Vec<ClusterNetworkPolicy> {
    (0..count)
        .map(|k| {
            let admin = k.is_multiple_of(2);
            let subject = match k % 5 {
                4 => json!({"namespaces": {}}),
                0 | 2 => json!({"namespaces": {"matchLabels": {"team": team(k % namespaces)}}}),
                _ => json!({"pods": {
                    "namespaceSelector": {"matchLabels": {"team": team(k % namespaces)}},
                    "podSelector": {"matchLabels": {"app": format!("app-{}", k % generate::APPS)}},
                }}),
            };
            let (ingress, egress): (Vec<_>, Vec<_>) =
                (0..rules).partition(|r| r.is_multiple_of(2));
            let spec = json!({
                "tier": if admin { "Admin" } else { "Baseline" },
                "priority": k / 2,
                "subject": subject,
                "ingress": ingress.iter().map(|&r| generated_rule(k, r, admin, namespaces)).collect::<Vec<_>>(),
                "egress": egress.iter().map(|&r| generated_rule(k, r, admin, namespaces)).collect::<Vec<_>>(),
            });
            serde_json::from_value(json!({"metadata": {"name": format!("cnp-{k}")}, "spec": spec}))
                .expect("generated ClusterNetworkPolicies deserialise")
        })
        .collect()
}

/// `count` Admin CNPs selecting every pod of `ns-0` (both bench pods),
/// each denying ingress from and egress to another app of `ns-0` on the
/// bench port: rules the bench connection (app-0 → app-1) is tested
/// against and never matches, so NetworkPolicy decides it.
///
/// # Panics
///
/// If a generated object does not deserialise (a bug in this generator).
pub fn admin_guards(count: usize) -> Vec<ClusterNetworkPolicy> {
    (0..count)
        .map(|i| {
            let other_app = json!({
                "namespaceSelector": {"matchLabels": {"team": team(0)}},
                "podSelector": {"matchLabels": {"app": format!("app-{}", 2 + i % (generate::APPS - 2))}},
            });
            let bench_port = json!([{"tcp": {"destinationPort": {"number": HTTP_PORT}}}]);
            serde_json::from_value(json!({
                "metadata": {"name": format!("guard-{i}")},
                "spec": {
                    "tier": "Admin",
                    "priority": i,
                    "subject": {"namespaces": {"matchLabels": {"team": team(0)}}},
                    "ingress": [{"name": "deny-from-other-app", "action": "Deny",
                                 "from": [{"pods": other_app}], "protocols": bench_port}],
                    "egress": [{"name": "deny-to-other-app", "action": "Deny",
                                "to": [{"pods": other_app}], "protocols": bench_port}],
                },
            }))
            .expect("generated ClusterNetworkPolicies deserialise")
        })
        .collect()
}

/// An Admin CNP denying every pod's egress to a documentation network:
/// a new policy chain and dispatch elements for every local pod.
fn added_guard(round: usize) -> Result<ClusterNetworkPolicy> {
    serde_json::from_value(json!({
        "metadata": {"name": format!("added-{round}")},
        "spec": {
            "tier": "Admin",
            "priority": 1000,
            "subject": {"namespaces": {}},
            "egress": [{"name": "deny-test-net", "action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]}],
        },
    }))
    .context("the added ClusterNetworkPolicy deserialises")
}

/// [`ClusterPolicyResult::change_to_enforced`]: `rounds` additions and as
/// many removals.
fn change_to_enforced(cluster: &Cluster, rounds: usize) -> Result<Summary> {
    let snapshot = Snapshot::from(cluster);
    in_fresh_netns(move || {
        let dataplane = KernelDataplane::open().context("opening the netlink socket")?;
        let mut reconciler = Reconciler::new(dataplane, generate::NODE, CompileOptions::default());
        reconciler
            .reconcile(&snapshot)
            .context("the first sync failed")?;
        let mut latencies = Vec::new();
        for round in 0..rounds {
            let mut added = snapshot.clone();
            added.cluster_policies.push(Arc::new(added_guard(round)?));
            for next in [&added, &snapshot] {
                let (report, elapsed) = timed(|| reconciler.reconcile(next));
                let report = report.with_context(|| format!("CNP change {round} failed"))?;
                if report.changes == 0 {
                    bail!("CNP change {round} changed nothing in the kernel");
                }
                latencies.push(elapsed);
            }
        }
        Ok(Summary::of(&latencies))
    })
}

fn sync(cluster: &Cluster, runs: usize) -> Result<SyncFigures> {
    let snapshot = Snapshot::from(cluster);
    let (model, resolve_ms) = timed(|| resolve_snapshot(&snapshot, generate::NODE));
    drop(snapshot);
    if let Some(error) = model.errors.first() {
        bail!("a generated object is invalid: {error}");
    }
    let (ruleset, compile_ms) = timed(|| compile(&model, CompileOptions::default()).ruleset);
    drop(model);
    let (changes, diff_ms) = timed(|| diff(None, &ruleset));
    let mut commits = Vec::new();
    let mut applied = None;
    for _ in 0..runs {
        let (sent, elapsed) = commit_in_fresh_netns(&changes)?;
        applied = Some(sent);
        commits.push(elapsed);
    }
    let applied = applied.unwrap_or_default();
    let (rules, chains, sets, elements) = counts(&ruleset);
    Ok(SyncFigures {
        cluster_policies: cluster.cluster_policies.len(),
        resolve_ms,
        compile_ms,
        diff_ms,
        rules,
        chains,
        sets,
        elements,
        batch_bytes: applied.bytes,
        batch_messages: applied.messages,
        commit: Summary::of(&commits),
    })
}

/// Runs measurement 8.
pub fn run(
    size: Shape,
    shape: ClusterPolicyShape,
    runs: usize,
    schedule: Schedule,
) -> Result<ClusterPolicyResult> {
    let namespaces = generate::namespace_count(size.policies);
    let mut cluster = generate::cluster(size);
    eprintln!("nftpol-bench: full sync without ClusterNetworkPolicies …");
    let without = sync(&cluster, runs)?;
    cluster.cluster_policies = cluster_policies(shape.cluster_policies, shape.rules, namespaces);
    eprintln!(
        "nftpol-bench: full sync with {} ClusterNetworkPolicies × {} rules …",
        shape.cluster_policies, shape.rules
    );
    let with = sync(&cluster, runs)?;
    eprintln!("nftpol-bench: one ClusterNetworkPolicy added and removed, {runs} times …");
    let change_to_enforced = change_to_enforced(&cluster, runs)?;
    drop(cluster);

    let start = load_average();
    let rt = lab::runtime()?;
    let lab = lab::build(&rt)?;
    let reference = lab::build_reference(&rt)?;
    let mut lab_cluster = lab::cluster(size.pods, size.policies, size.seed, &lab);
    let mut trials = Vec::new();
    for (setup, guards) in [(Setup::NFTPOL, 0), (Setup::NftpolAdminGuards, shape.guards)] {
        lab_cluster.cluster_policies = admin_guards(guards);
        let rulesets = lab::rulesets_with(&lab_cluster, CompileOptions::default())
            .map(|compiled| compiled.ruleset);
        let elements = rulesets.iter().map(Ruleset::element_count).sum();
        let tables = Tables::Nftpol(Box::new(rulesets));
        let rules = tables.rules(0);
        trials.push(Trial::new(
            setup,
            size.policies,
            tables,
            (rules, elements),
            false,
        ));
    }
    drop(lab_cluster);
    let (points, notes) = rounds::run_enforcing(lab, reference, trials, &schedule)?;
    Ok(ClusterPolicyResult {
        pods: size.pods,
        policies: size.policies,
        shape,
        syncs: vec![without, with],
        change_to_enforced,
        schedule,
        points,
        notes,
        load: Load {
            start,
            end: load_average(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftpol_model::cluster_policy::Tier;

    fn small_cluster() -> Cluster {
        generate::cluster(Shape {
            pods: 300,
            policies: 50,
            seed: 1,
        })
    }

    #[test]
    fn generated_cluster_policies_are_valid_untied_and_select_local_pods() {
        let mut cluster = small_cluster();
        let namespaces = generate::namespace_count(50);
        cluster.cluster_policies = cluster_policies(20, 10, namespaces);
        let model = nftpol_model::resolve(&cluster, generate::NODE);
        assert!(model.errors.is_empty(), "{:?}", model.errors);
        assert!(model.priority_ties.is_empty(), "{:?}", model.priority_ties);
        assert_eq!(
            model.cluster_policies.len(),
            20,
            "every CNP selects a pod on node-1"
        );
        let tiers: Vec<Tier> = model
            .cluster_policies
            .iter()
            .map(|policy| policy.tier)
            .collect();
        assert!(tiers.contains(&Tier::Admin) && tiers.contains(&Tier::Baseline));
    }

    #[test]
    fn admin_guards_select_the_bench_pods_and_never_decide_the_bench_connection() {
        use nftpol_model::{evaluate, Connection, Decision, Protocol};
        let mut cluster = small_cluster();
        cluster.cluster_policies = admin_guards(10);
        let model = nftpol_model::resolve(&cluster, generate::NODE);
        assert!(model.errors.is_empty(), "{:?}", model.errors);
        assert_eq!(model.cluster_policies.len(), 10);
        // ns-0's app-0 to its app-1 on the bench port, both on node-1: the
        // guards are read and leave it to NetworkPolicy, which allows it.
        let address = |app: &str| -> std::net::IpAddr {
            cluster
                .pods
                .iter()
                .filter(|pod| pod.metadata.namespace.as_deref() == Some("ns-0"))
                .filter(|pod| {
                    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref())
                        == Some(generate::NODE)
                })
                .filter(|pod| {
                    pod.metadata
                        .labels
                        .as_ref()
                        .and_then(|labels| labels.get("app"))
                        == Some(&app.to_owned())
                })
                .find_map(|pod| pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
                .expect("ns-0 has every app on node-1")
        };
        let connection = Connection {
            source: address("app-0"),
            destination: address("app-1"),
            protocol: Protocol::Tcp,
            port: HTTP_PORT,
        };
        for decision in <[Decision; 2]>::from(evaluate(&cluster, &connection)) {
            assert!(decision.is_allowed(), "{decision:?}");
            assert!(
                !matches!(decision, Decision::Cluster { .. }),
                "a guard decided the bench connection: {decision:?}"
            );
        }
    }
}
