//! Remote pod changes through `Reconciler::reconcile_pods`, and
//! NetworkPolicy changes through `Reconciler::reconcile_policies`, reach
//! exactly the ruleset (and provenance) a full model and compile of the
//! same cluster gives, whether they took their fast path or fell back to
//! the full one; and the fast paths are what remote pods and single
//! policies take.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use nftpol_agent::verdict_log::LogDirectory;
use nftpol_agent::{PodChange, Reconciler, Sync};
use nftpol_model::log_limit::LOG_LIMIT;
use nftpol_model::PolicyChange;
use nftpol_model::{resolve_snapshot, PodView, PolicyView, Snapshot};
use nftpol_netlink::FakeDataplane;
use nftpol_ruleset::compile::{compile, CompileOptions, DenyAction};
use nftpol_ruleset::rejudge::{self, MarkBits, Rejudge};
use nftpol_ruleset::verdict_log::{LogCatalogue, VerdictLogMode, VerdictLogOptions};
use nftpol_testkit::fixtures::{self, Tcp, Udp};
use proptest::prelude::*;
use serde_json::{json, Value};

const NODE: &str = "node-1";
const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const APPS: [&str; 3] = ["a", "b", "c"];

fn namespace(name: &str, team: &str) -> Arc<Namespace> {
    Arc::new(fixtures::namespace(name).label("team", team).build())
}

fn node(name: &str, cidrs: &[&str]) -> Arc<Node> {
    Arc::new(
        cidrs
            .iter()
            .fold(fixtures::node(name), |node, cidr| node.pod_cidr(cidr))
            .build(),
    )
}

/// A generated pod: namespace, labels, node, addresses, named ports, phase.
#[derive(Debug, Clone)]
struct PodSpec {
    namespace: usize,
    app: usize,
    tier: Option<&'static str>,
    /// `node-1` (this node) or `node-2`.
    node: u8,
    address: u8,
    dual_stack: bool,
    http_port: u16,
    phase: &'static str,
}

fn pod(name: &str, spec: &PodSpec) -> Arc<PodView> {
    let mut pod = fixtures::pod(NAMESPACES[spec.namespace], name)
        .label("app", APPS[spec.app])
        .node(spec.node)
        .ip(&format!("10.244.{}.{}", spec.node, spec.address))
        .named_port("http", i32::from(spec.http_port), Tcp)
        .named_port("dns", 53, Udp)
        .phase(spec.phase);
    if spec.dual_stack {
        pod = pod.ip(&format!("fd00:{}::{:x}", spec.node, spec.address));
    }
    if let Some(tier) = spec.tier {
        pod = pod.label("tier", tier);
    }
    Arc::new(PodView::from_pod(&pod.build()))
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        0..NAMESPACES.len(),
        0..APPS.len(),
        prop::option::of(Just("web")),
        prop::sample::select(vec![1_u8, 2, 2, 2, 2]),
        1..12_u8,
        prop::bool::weighted(0.3),
        prop::sample::select(vec![80_u16, 8080]),
        prop::sample::select(
            vec!["Running"; 9]
                .into_iter()
                .chain(["Succeeded"])
                .collect::<Vec<_>>(),
        ),
    )
        .prop_map(
            |(namespace, app, tier, node, address, dual_stack, http_port, phase)| PodSpec {
                namespace,
                app,
                tier,
                node,
                address,
                dual_stack,
                http_port,
                phase,
            },
        )
}

/// One peer of a generated rule.
fn peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0..APPS.len()).prop_map(|app| json!({"podSelector": {"matchLabels": {"app": APPS[app]}}})),
        Just(json!({"namespaceSelector": {"matchLabels": {"team": "blue"}}})),
        (0..APPS.len()).prop_map(|app| json!({
            "namespaceSelector": {},
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": [APPS[app]]}]},
        })),
        Just(json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}})),
        Just(json!({"ipBlock": {"cidr": "10.244.2.0/24", "except": ["10.244.2.8/29"]}})),
        Just(json!({"ipBlock": {"cidr": "fd00:2::/64"}})),
    ]
}

fn ports() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!([{"port": "http"}]))),
        Just(Some(
            json!([{"port": "dns", "protocol": "UDP"}, {"port": 80}])
        )),
        Just(Some(json!([{"port": 8000, "endPort": 8100}]))),
    ]
}

fn rule(direction: &'static str) -> impl Strategy<Value = Value> {
    (prop::collection::vec(peer(), 0..3), ports()).prop_map(move |(peers, ports)| {
        let mut rule = json!({});
        if !peers.is_empty() {
            rule[if direction == "ingress" { "from" } else { "to" }] = json!(peers);
        }
        if let Some(ports) = ports {
            rule["ports"] = ports;
        }
        rule
    })
}

/// A generated policy: its namespace, the app it selects (all pods when
/// `None`), its ingress and egress rules.
#[derive(Debug, Clone)]
struct PolicySpec {
    namespace: usize,
    app: Option<usize>,
    ingress: Vec<Value>,
    egress: Vec<Value>,
}

fn policy() -> impl Strategy<Value = PolicySpec> {
    (
        0..NAMESPACES.len(),
        prop::option::of(0..APPS.len()),
        prop::collection::vec(rule("ingress"), 0..3),
        prop::collection::vec(rule("egress"), 0..3),
    )
        .prop_map(|(namespace, app, ingress, egress)| PolicySpec {
            namespace,
            app,
            ingress,
            egress,
        })
}

fn policies(specs: &[PolicySpec]) -> Vec<Arc<PolicyView>> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| policy_object(&format!("p{index}"), spec))
        .collect()
}

/// The policy `name` with `spec`. Its verdict log limit follows from its
/// name (so a replaced policy keeps it, and group chains of policies with
/// different limits log at the strictest).
fn policy_object(name: &str, spec: &PolicySpec) -> Arc<PolicyView> {
    let selector = spec
        .app
        .map_or(json!({}), |app| json!({"matchLabels": {"app": APPS[app]}}));
    let mut policy = fixtures::policy(NAMESPACES[spec.namespace], name)
        .spec(&json!({
            "podSelector": selector,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": spec.ingress,
            "egress": spec.egress,
        }))
        .build();
    let limit = match name.bytes().last().map(|last| last % 3) {
        Some(1) => Some("3/second"),
        Some(2) => Some("20/hour"),
        _ => None,
    };
    policy.metadata.annotations =
        limit.map(|limit| [(LOG_LIMIT.to_owned(), limit.to_owned())].into());
    Arc::new(PolicyView::from_policy(&policy))
}

/// A change to the generated cluster's pods.
#[derive(Debug, Clone)]
enum Event {
    Add(PodSpec),
    Replace(usize, PodSpec),
    Delete(usize),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => pod_spec().prop_map(Event::Add),
        3 => (any::<usize>(), pod_spec()).prop_map(|(index, spec)| Event::Replace(index, spec)),
        2 => any::<usize>().prop_map(Event::Delete),
    ]
}

fn snapshot(pods: &[Arc<PodView>], policies: &[Arc<PolicyView>]) -> Snapshot {
    Snapshot {
        namespaces: vec![
            namespace("x", "blue"),
            namespace("y", "red"),
            namespace("z", "blue"),
        ],
        pods: pods.to_vec(),
        policies: policies.to_vec(),
        cluster_policies: Vec::new(),
        nodes: vec![
            node("node-1", &["10.244.1.0/24", "fd00:1::/64"]),
            node("node-2", &["10.244.2.0/24", "fd00:2::/64"]),
        ],
    }
}

/// Applies `event` to `pods` and returns the change the pod store reports.
fn apply(event: &Event, pods: &mut Vec<Arc<PodView>>, serial: &mut usize) -> Option<PodChange> {
    match event {
        Event::Add(spec) => {
            *serial += 1;
            let added = pod(&format!("pod-{serial}"), spec);
            pods.push(Arc::clone(&added));
            Some(PodChange {
                before: None,
                after: Some(added),
            })
        }
        Event::Replace(index, spec) if !pods.is_empty() => {
            let position = index % pods.len();
            let before = Arc::clone(&pods[position]);
            let after = pod(&before.name, spec);
            pods[position] = Arc::clone(&after);
            Some(PodChange {
                before: Some(before),
                after: Some(after),
            })
        }
        Event::Delete(index) if !pods.is_empty() => {
            let before = pods.remove(index % pods.len());
            Some(PodChange {
                before: Some(before),
                after: None,
            })
        }
        Event::Replace(..) | Event::Delete(_) => None,
    }
}

/// Runs `events` through `reconcile_pods` and holds every commit equal to
/// the full compile; with re-judging, at the generation the reconciler
/// reached, which moves only forward.
fn check_pod_changes(
    options: CompileOptions,
    initial: &[PodSpec],
    specs: &[PolicySpec],
    events: &[Event],
) -> Result<(), TestCaseError> {
    let policies = policies(specs);
    let mut pods: Vec<Arc<PodView>> = initial
        .iter()
        .enumerate()
        .map(|(index, spec)| pod(&format!("initial-{index}"), spec))
        .collect();
    let mut serial = 0;
    let mut reconciler = Reconciler::new(FakeDataplane::new(), NODE, options);
    reconciler
        .reconcile(&snapshot(&pods, &policies))
        .expect("the first sync commits");
    let generation = |reconciler: &Reconciler<FakeDataplane>| {
        reconciler
            .committed()
            .and_then(|table| rejudge::generation_of(table, MarkBits::default()))
    };
    let mut previous = generation(&reconciler);
    for event in events {
        let Some(change) = apply(event, &mut pods, &mut serial) else {
            continue;
        };
        let now = snapshot(&pods, &policies);
        reconciler
            .reconcile_pods(&[change], || now.clone())
            .expect("a pod change commits");
        let mut expected = compile(&resolve_snapshot(&now, NODE), options).ruleset;
        let reached = generation(&reconciler);
        if let (Some(settings), Some(reached)) = (options.rejudge, reached) {
            rejudge::set_generation(
                &mut expected,
                Rejudge {
                    generation: reached,
                    ..settings
                },
            );
        }
        prop_assert_eq!(reconciler.committed(), Some(&expected), "after {:?}", event);
        prop_assert_eq!(reconciler.dataplane_mut().state(), Some(&expected));
        prop_assert!(reached >= previous, "the generation never goes back");
        previous = reached;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn pod_changes_reach_the_full_compile(
        initial in prop::collection::vec(pod_spec(), 0..10),
        specs in prop::collection::vec(policy(), 1..4),
        events in prop::collection::vec(event(), 1..8),
    ) {
        check_pod_changes(CompileOptions::default(), &initial, &specs, &events)?;
    }

    #[test]
    fn pod_changes_with_rejudging_reach_the_full_compile_at_the_reached_generation(
        initial in prop::collection::vec(pod_spec(), 0..10),
        specs in prop::collection::vec(policy(), 1..4),
        events in prop::collection::vec(event(), 1..8),
    ) {
        let options = CompileOptions { rejudge: Some(Rejudge::default()), ..CompileOptions::default() };
        check_pod_changes(options, &initial, &specs, &events)?;
    }
}

/// A change to the generated cluster's policies.
#[derive(Debug, Clone)]
enum PolicyEvent {
    Add(PolicySpec),
    Replace(usize, PolicySpec),
    Delete(usize),
}

fn policy_event() -> impl Strategy<Value = PolicyEvent> {
    prop_oneof![
        3 => policy().prop_map(PolicyEvent::Add),
        3 => (any::<usize>(), policy()).prop_map(|(index, spec)| PolicyEvent::Replace(index, spec)),
        2 => any::<usize>().prop_map(PolicyEvent::Delete),
    ]
}

/// A change to the generated cluster: a pod's, or a burst of policy
/// changes (one reconcile).
#[derive(Debug, Clone)]
enum ClusterEvent {
    Pod(Event),
    Policies(Vec<PolicyEvent>),
}

fn cluster_event() -> impl Strategy<Value = ClusterEvent> {
    prop_oneof![
        2 => event().prop_map(ClusterEvent::Pod),
        5 => prop::collection::vec(policy_event(), 1..4).prop_map(ClusterEvent::Policies),
    ]
}

/// Applies a policy `event` to `policies` and returns the change the
/// policy store reports.
fn apply_policy(
    event: &PolicyEvent,
    policies: &mut Vec<Arc<PolicyView>>,
    serial: &mut usize,
) -> Option<PolicyChange> {
    match event {
        PolicyEvent::Add(spec) => {
            *serial += 1;
            let added = policy_object(&format!("added-{serial}"), spec);
            policies.push(Arc::clone(&added));
            Some(PolicyChange {
                before: None,
                after: Some(added),
            })
        }
        PolicyEvent::Replace(index, spec) if !policies.is_empty() => {
            let position = index % policies.len();
            let before = Arc::clone(&policies[position]);
            let name = before.id().name.clone();
            // The policy keeps its name, and its namespace (a policy
            // cannot move); its selector and rules change.
            let namespace = NAMESPACES
                .iter()
                .position(|namespace| before.id().namespace == *namespace)
                .unwrap_or(0);
            let after = policy_object(
                &name,
                &PolicySpec {
                    namespace,
                    ..spec.clone()
                },
            );
            policies[position] = Arc::clone(&after);
            Some(PolicyChange {
                before: Some(before),
                after: Some(after),
            })
        }
        PolicyEvent::Delete(index) if !policies.is_empty() => {
            let before = policies.remove(index % policies.len());
            Some(PolicyChange {
                before: Some(before),
                after: None,
            })
        }
        _ => None,
    }
}

/// Runs `events` through `reconcile_policies` and `reconcile_pods` and
/// holds every commit (the ruleset, the fake kernel's, the provenance, the
/// verdict log's catalogue) equal to the full compile; every burst of
/// policy changes takes the policy path.
fn check_policy_changes(
    options: CompileOptions,
    initial: &[PodSpec],
    specs: &[PolicySpec],
    events: &[ClusterEvent],
) -> Result<(), TestCaseError> {
    let mut policies = policies(specs);
    let mut pods: Vec<Arc<PodView>> = initial
        .iter()
        .enumerate()
        .map(|(index, spec)| pod(&format!("initial-{index}"), spec))
        .collect();
    let (mut pod_serial, mut policy_serial) = (0, 0);
    let mut reconciler = Reconciler::new(FakeDataplane::new(), NODE, options);
    let directory = LogDirectory::default();
    reconciler.set_log_directory(directory.clone());
    reconciler
        .reconcile(&snapshot(&pods, &policies))
        .expect("the first sync commits");
    let mut previous = generation(&reconciler);
    for event in events {
        let report = if let ClusterEvent::Pod(event) = event {
            let Some(change) = apply(event, &mut pods, &mut pod_serial) else {
                continue;
            };
            let now = snapshot(&pods, &policies);
            reconciler
                .reconcile_pods(&[change], || now.clone())
                .expect("a pod change commits")
        } else if let ClusterEvent::Policies(burst) = event {
            let changes: Vec<PolicyChange> = burst
                .iter()
                .filter_map(|event| apply_policy(event, &mut policies, &mut policy_serial))
                .collect();
            if changes.is_empty() {
                continue;
            }
            let now = snapshot(&pods, &policies);
            let report = reconciler
                .reconcile_policies(&changes, || now.clone())
                .expect("policy changes commit");
            prop_assert_eq!(report.sync, Sync::Policy, "after {:?}", event);
            report
        } else {
            continue;
        };
        let now = snapshot(&pods, &policies);
        let mut expected = compile(&resolve_snapshot(&now, NODE), options);
        let reached = generation(&reconciler);
        if let (Some(settings), Some(reached)) = (options.rejudge, reached) {
            rejudge::set_generation(
                &mut expected.ruleset,
                Rejudge {
                    generation: reached,
                    ..settings
                },
            );
        }
        prop_assert_eq!(
            reconciler.committed(),
            Some(&expected.ruleset),
            "after {:?} ({:?})",
            event,
            report.sync
        );
        prop_assert_eq!(reconciler.dataplane_mut().state(), Some(&expected.ruleset));
        prop_assert_eq!(reconciler.provenance(), &expected.provenance);
        let catalogue = directory.read(|directory| directory.catalogue().clone());
        prop_assert_eq!(catalogue, LogCatalogue::new(&expected.provenance));
        prop_assert!(reached >= previous, "the generation never goes back");
        previous = reached;
    }
    Ok(())
}

/// The generation the committed table stamps (with re-judging).
fn generation(reconciler: &Reconciler<FakeDataplane>) -> Option<rejudge::Generation> {
    reconciler
        .committed()
        .and_then(|table| rejudge::generation_of(table, MarkBits::default()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn policy_changes_interleaved_with_pod_changes_reach_the_full_compile(
        initial in prop::collection::vec(pod_spec(), 0..10),
        specs in prop::collection::vec(policy(), 0..4),
        events in prop::collection::vec(cluster_event(), 1..10),
        reject in any::<bool>(),
    ) {
        let options = CompileOptions {
            deny: if reject { DenyAction::Reject } else { DenyAction::Drop },
            ..CompileOptions::default()
        };
        check_policy_changes(options, &initial, &specs, &events)?;
    }

    /// The agent's defaults: re-judging on, denies logged; and every
    /// verdict logged.
    #[test]
    fn policy_changes_with_rejudging_and_the_verdict_log_reach_the_full_compile(
        initial in prop::collection::vec(pod_spec(), 0..10),
        specs in prop::collection::vec(policy(), 0..4),
        events in prop::collection::vec(cluster_event(), 1..10),
        all in any::<bool>(),
    ) {
        let options = CompileOptions {
            rejudge: Some(Rejudge::default()),
            verdict_log: VerdictLogOptions {
                mode: if all { VerdictLogMode::All } else { VerdictLogMode::Deny },
                ..VerdictLogOptions::default()
            },
            ..CompileOptions::default()
        };
        check_policy_changes(options, &initial, &specs, &events)?;
    }
}

#[test]
fn remote_pod_changes_take_the_element_path_and_local_ones_the_full_path() {
    let specs = vec![PolicySpec {
        namespace: 0,
        app: Some(0),
        ingress: vec![json!({"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]})],
        egress: vec![json!({"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]})],
    }];
    let policies = policies(&specs);
    let local = PodSpec {
        namespace: 0,
        app: 0,
        tier: None,
        node: 1,
        address: 2,
        dual_stack: false,
        http_port: 80,
        phase: "Running",
    };
    let mut pods = vec![pod("target", &local)];
    let mut reconciler = Reconciler::new(FakeDataplane::new(), NODE, CompileOptions::default());
    reconciler
        .reconcile(&snapshot(&pods, &policies))
        .expect("the first sync commits");
    let mut serial = 0;
    let remote = PodSpec {
        app: 1,
        node: 2,
        address: 3,
        ..local.clone()
    };
    for (event, pods_only) in [
        (Event::Add(remote.clone()), true),
        (
            Event::Replace(
                1,
                PodSpec {
                    app: 2,
                    ..remote.clone()
                },
            ),
            true,
        ),
        (Event::Delete(1), true),
        (
            Event::Add(PodSpec {
                address: 4,
                ..local.clone()
            }),
            false,
        ),
    ] {
        let change = apply(&event, &mut pods, &mut serial).expect("a change");
        let now = snapshot(&pods, &policies);
        let report = reconciler
            .reconcile_pods(&[change], || now.clone())
            .expect("a pod change commits");
        assert_eq!(report.sync == Sync::Pods, pods_only, "{event:?}");
        assert!(
            !pods_only || report.changes > 0,
            "{event:?} changed elements"
        );
        let expected = compile(&resolve_snapshot(&now, NODE), CompileOptions::default()).ruleset;
        assert_eq!(reconciler.committed(), Some(&expected), "{event:?}");
    }
}

#[test]
fn policy_path_bumps_the_generation_only_when_permission_may_go() {
    let isolating = PolicySpec {
        namespace: 0,
        app: Some(0),
        ingress: vec![json!({"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]})],
        egress: vec![],
    };
    let mut policies = policies(std::slice::from_ref(&isolating));
    let local = |app, address| PodSpec {
        namespace: 0,
        app,
        tier: None,
        node: 1,
        address,
        dual_stack: false,
        http_port: 80,
        phase: "Running",
    };
    let pods = vec![pod("a", &local(0, 2)), pod("c", &local(2, 3))];
    let options = CompileOptions {
        rejudge: Some(Rejudge::default()),
        ..CompileOptions::default()
    };
    let mut reconciler = Reconciler::new(FakeDataplane::new(), NODE, options);
    reconciler
        .reconcile(&snapshot(&pods, &policies))
        .expect("the first sync commits");
    let allow_more = PolicySpec {
        ingress: vec![json!({"ports": [{"port": 8080}]})],
        ..isolating.clone()
    };
    let isolate_c = PolicySpec {
        app: Some(2),
        ..isolating
    };
    let mut serial = 0;
    for (event, bumps) in [
        // a is isolated for ingress and egress already: only more allowed.
        (PolicyEvent::Add(allow_more), false),
        (PolicyEvent::Delete(1), true),
        // c was isolated by nothing.
        (PolicyEvent::Add(isolate_c), true),
    ] {
        let change = apply_policy(&event, &mut policies, &mut serial).expect("a change");
        let now = snapshot(&pods, &policies);
        let report = reconciler
            .reconcile_policies(&[change], || now.clone())
            .expect("a policy change commits");
        assert_eq!(report.sync, Sync::Policy, "{event:?}");
        assert!(report.changes > 0, "{event:?} changed the table");
        assert_eq!(report.rejudge_generation.is_some(), bumps, "{event:?}");
    }
    // Two policies' changes in one burst: one batch.
    let changes: Vec<PolicyChange> = (0..2)
        .filter_map(|_| apply_policy(&PolicyEvent::Delete(0), &mut policies, &mut serial))
        .collect();
    let now = snapshot(&pods, &policies);
    let report = reconciler
        .reconcile_policies(&changes, || now.clone())
        .expect("the policy changes commit");
    assert_eq!(report.sync, Sync::Policy);
    assert!(report.rejudge_generation.is_some(), "allows went");
    let mut expected = compile(&resolve_snapshot(&now, NODE), options).ruleset;
    if let Some(reached) = generation(&reconciler) {
        rejudge::set_generation(
            &mut expected,
            Rejudge {
                generation: reached,
                ..Rejudge::default()
            },
        );
    }
    assert_eq!(reconciler.committed(), Some(&expected));
}
