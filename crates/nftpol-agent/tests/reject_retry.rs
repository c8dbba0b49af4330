//! A kernel rejection of a whole batch never wedges the reconcile path: the
//! kernel (here the `FakeDataplane`, which commits all or nothing like the
//! kernel) keeps the previous ruleset, the next reconcile is a full sync
//! from the kernel's truth, and it commits exactly the desired ruleset.

use nftpol_agent::{ReconcileError, Reconciler, Sync};
use nftpol_ir::Ruleset;
use nftpol_model::{resolve_snapshot, Direction, PolicyId, Snapshot};
use nftpol_netlink::{Dataplane as _, FakeDataplane};
use nftpol_ruleset::catalogue::{ChainName, Family, SetName};
use nftpol_ruleset::compile::{compile, CompileOptions};
use nix::errno::Errno;

const NODE: &str = "node-1";

const BASE: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.244.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: 10.244.1.2}]}
";

/// The base cluster plus `extra` YAML documents.
fn cluster(extra: &str) -> Snapshot {
    Snapshot::from(
        &nftpol_model::manifests::parse(&format!("{BASE}{extra}"))
            .expect("test YAML parses")
            .cluster,
    )
}

fn pod_b() -> &'static str {
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: {pod: b}}\n\
     spec: {nodeName: node-1, containers: [{name: c, image: i}]}\n\
     status: {phase: Running, podIPs: [{ip: 10.244.1.3}]}\n"
}

fn deny_all() -> &'static str {
    "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
     metadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n"
}

fn desired(cluster: &Snapshot) -> Ruleset {
    compile(&resolve_snapshot(cluster, NODE), CompileOptions::default()).ruleset
}

fn reconciler() -> Reconciler<FakeDataplane> {
    Reconciler::new(FakeDataplane::new(), NODE, CompileOptions::default())
}

#[test]
fn rejected_batch_keeps_the_old_ruleset_and_the_retry_commits_the_new_one() {
    let cases = [
        ("invalid argument", Errno::EINVAL, "invalid"),
        ("busy", Errno::EBUSY, "busy"),
        ("out of memory", Errno::ENOMEM, "kernel"),
        ("permission", Errno::EPERM, "permission"),
    ];
    for (name, errno, kind) in cases {
        let first = cluster("");
        let second = cluster(&format!("{}{}", pod_b(), deny_all()));
        let mut reconciler = reconciler();
        reconciler
            .reconcile(&first)
            .expect("the first reconcile commits");
        assert!(!reconciler.is_full_sync_next(), "case {name}");

        reconciler.dataplane_mut().fail_next_apply(errno);
        let error = reconciler
            .reconcile(&second)
            .expect_err("the injected rejection surfaces");
        match &error {
            ReconcileError::Apply(apply) => {
                assert_eq!(apply.errno(), Some(errno), "case {name}");
                assert_eq!(apply.kind(), kind, "case {name}");
            }
            ReconcileError::Read(read) => {
                panic!("case {name}: expected an apply error, got {read:?}")
            }
        }
        assert_eq!(
            reconciler.dataplane_mut().state(),
            Some(&desired(&first)),
            "case {name}: a rejected batch changes nothing"
        );
        assert!(reconciler.is_full_sync_next(), "case {name}");

        let report = reconciler.reconcile(&second).expect("the retry commits");
        assert!(
            report.sync == Sync::Full,
            "case {name}: the retry reads the kernel back"
        );
        assert!(report.changes > 0, "case {name}");
        assert_eq!(
            reconciler.dataplane_mut().state(),
            Some(&desired(&second)),
            "case {name}"
        );
        assert_eq!(
            reconciler.committed(),
            Some(&desired(&second)),
            "case {name}"
        );
        assert_eq!(
            reconciler.dataplane_mut().rejected_count(),
            1,
            "case {name}"
        );
        assert!(!reconciler.is_full_sync_next(), "case {name}");
    }
}

#[test]
fn a_run_of_rejections_ends_with_the_first_success() {
    let first = cluster("");
    let second = cluster(deny_all());
    let mut reconciler = reconciler();
    reconciler
        .reconcile(&first)
        .expect("the first reconcile commits");
    for attempt in 0..5 {
        reconciler.dataplane_mut().fail_next_apply(Errno::EINVAL);
        assert!(
            reconciler.reconcile(&second).is_err(),
            "attempt {attempt} is rejected"
        );
        assert_eq!(reconciler.dataplane_mut().state(), Some(&desired(&first)));
    }
    let report = reconciler
        .reconcile(&second)
        .expect("the sixth attempt commits");
    assert_eq!(report.sync, Sync::Full);
    assert_eq!(report.generation, 7);
    assert_eq!(reconciler.dataplane_mut().state(), Some(&desired(&second)));
    assert_eq!(reconciler.dataplane_mut().rejected_count(), 5);
    // Back to partial syncs: pod churn is an element-only batch again.
    let third = cluster(&format!("{}{}", pod_b(), deny_all()));
    let report = reconciler.reconcile(&third).expect("pod churn commits");
    assert_ne!(report.sync, Sync::Full);
    assert!(
        reconciler
            .dataplane_mut()
            .last_diff()
            .is_some_and(nftpol_ir::diff::Diff::is_element_only),
        "pod churn after recovery must be element-only"
    );
}

#[test]
fn a_table_deleted_behind_the_agent_is_rebuilt_after_one_rejection() {
    let first = cluster(deny_all());
    let second = cluster(&format!("{}{}", pod_b(), deny_all()));
    let mut reconciler = reconciler();
    reconciler
        .reconcile(&first)
        .expect("the first reconcile commits");
    reconciler
        .dataplane_mut()
        .delete_table()
        .expect("the fake deletes its table");
    // The partial diff adds elements to sets the kernel no longer has: the
    // batch cannot be built or is rejected; either way nothing changes.
    let error = reconciler
        .reconcile(&second)
        .expect_err("elements of a missing table cannot be applied");
    assert!(matches!(&error, ReconcileError::Apply(_)), "{error:?}");
    assert_eq!(reconciler.dataplane_mut().state(), None);
    assert!(reconciler.is_full_sync_next());
    let report = reconciler
        .reconcile(&second)
        .expect("the full sync rebuilds");
    assert_eq!(report.sync, Sync::Full);
    assert_eq!(reconciler.dataplane_mut().state(), Some(&desired(&second)));
}

#[test]
fn an_object_over_a_limit_is_reported_and_the_rest_still_commits() {
    let ports: Vec<String> = (0..=nftpol_model::limits::MAX_PORTS_PER_RULE)
        .map(|index| format!("{{port: {}}}", 1000 + index))
        .collect();
    let huge = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: huge, namespace: x}}\n\
         spec: {{podSelector: {{matchLabels: {{pod: a}}}}, ingress: [{{ports: [{}]}}]}}\n",
        ports.join(", ")
    );
    let cluster = cluster(&format!("{}{huge}", pod_b()));
    let mut reconciler = reconciler();
    let report = reconciler
        .reconcile(&cluster)
        .expect("an invalid object never stops a reconcile");
    let fields: Vec<(&str, &str)> = report
        .invalid
        .iter()
        .map(|error| (error.object.as_str(), error.field.as_str()))
        .collect();
    assert_eq!(fields, [("x/huge", "spec.ingress[0].ports")]);
    let state = reconciler
        .dataplane_mut()
        .state()
        .expect("the table exists")
        .clone();
    assert_eq!(state, desired(&cluster));
    // x/a is isolated (its address is in the ingress dispatch map) and its
    // policy chain allows nothing.
    let dispatch = &state.sets[&SetName::Dispatch {
        direction: Direction::Ingress,
        family: Family::V4,
    }
    .name()];
    assert_eq!(dispatch.elements.len(), 1);
    let huge = ChainName::Policy {
        policy: PolicyId {
            namespace: "x".to_owned(),
            name: "huge".to_owned(),
        },
        direction: Direction::Ingress,
    };
    let policy_chain = &state.chains[&huge.name()];
    assert!(policy_chain.rules.is_empty(), "{policy_chain:?}");
}
