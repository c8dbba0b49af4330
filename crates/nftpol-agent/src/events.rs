//! Kubernetes Events for policy parts nftpol does not enforce as written:
//! a `Warning` Event, reason [`REASON`], on the NetworkPolicy or
//! ClusterNetworkPolicy an invalid part ([`ModelError`]) belongs to, so
//! `kubectl describe` shows what the `warn` log line says (a
//! ClusterNetworkPolicy `domainNames` peer passes the CRD's validation but
//! matches nothing here).
//!
//! - **Once per object generation and problem**: the reconcile loop reports
//!   the same invalid parts on every reconcile; an Event is created the
//!   first time a (uid, generation, field, problem) is seen. An edit of the
//!   spec bumps the generation and reports again.
//! - **events.k8s.io/v1, create only**: no series patching, so the RBAC
//!   needs only `create` on events. A failed create is logged and not
//!   retried: the log line carries the same text.
//! - **Where**: a NetworkPolicy's Event lives in its namespace; a
//!   ClusterNetworkPolicy is cluster-scoped, and the API server accepts
//!   Events on cluster-scoped objects in namespace `default` (as for Nodes).
//! - Other kinds' invalid parts (annotations on pods or namespaces) are only
//!   logged.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::Resource;
use kube::api::{Api, PostParams};
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use nftpol_model::{ModelError, Snapshot};

/// The Events' reason.
pub const REASON: &str = "NotEnforced";
/// `reportingController` of every Event.
pub const CONTROLLER: &str = "nftpol.io/agent";
/// The API server refuses an Event note longer than this.
const NOTE_LIMIT: usize = 1024;

/// What one Event reports; seen once, never reported again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reported {
    uid: String,
    generation: i64,
    field: String,
    problem: String,
}

/// Creates the Events of one agent; see the module doc.
pub struct EventReporter {
    client: kube::Client,
    /// `reportingInstance`: the agent of this node.
    instance: String,
    reported: BTreeSet<Reported>,
}

impl EventReporter {
    /// A reporter for the agent of node `node`.
    pub fn new(client: kube::Client, node: &str) -> Self {
        Self {
            client,
            instance: format!("nftpol-{node}"),
            reported: BTreeSet::new(),
        }
    }

    /// Creates, in the background, an Event for each part of `invalid` not
    /// reported yet for its object's generation in `snapshot`.
    pub fn report(&mut self, invalid: &[ModelError], snapshot: &Snapshot) {
        let events = pending(&mut self.reported, &self.instance, invalid, snapshot);
        for (namespace, event) in events {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            tokio::spawn(async move {
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(%error, "creating an Event failed; the log line stands alone");
                }
            });
        }
    }
}

/// The Events (with their namespace) for the parts of `invalid` whose
/// object is in `snapshot` and that `reported` does not hold yet; records
/// them there.
fn pending(
    reported: &mut BTreeSet<Reported>,
    instance: &str,
    invalid: &[ModelError],
    snapshot: &Snapshot,
) -> Vec<(String, Event)> {
    let mut events = Vec::new();
    for error in invalid {
        let Some((namespace, regarding, generation)) = regarding(error, snapshot) else {
            continue;
        };
        let Some(uid) = regarding.uid.clone() else {
            continue;
        };
        let key = Reported {
            uid,
            generation,
            field: error.field.clone(),
            problem: error.problem.clone(),
        };
        if !reported.insert(key) {
            continue;
        }
        let name = regarding.name.clone().unwrap_or_default();
        events.push((
            namespace.clone(),
            Event {
                metadata: ObjectMeta {
                    // The API server validates the prefix with a trailing dash only.
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(namespace),
                    ..ObjectMeta::default()
                },
                event_time: Some(MicroTime(jiff::Timestamp::now())),
                reporting_controller: Some(CONTROLLER.to_owned()),
                reporting_instance: Some(instance.to_owned()),
                action: Some("Enforce".to_owned()),
                reason: Some(REASON.to_owned()),
                type_: Some("Warning".to_owned()),
                note: Some(truncate(&format!("{}: {}", error.field, error.problem))),
                regarding: Some(regarding),
                ..Event::default()
            },
        ));
    }
    events
}

/// The Event's namespace, the reference to the object `error` is about,
/// and the object's generation, when it is a policy in `snapshot`.
fn regarding(error: &ModelError, snapshot: &Snapshot) -> Option<(String, ObjectReference, i64)> {
    if error.kind == ClusterNetworkPolicy::KIND {
        // The model names a ClusterNetworkPolicy `cnp/NAME` in its errors,
        // as in its log lines and `explain`.
        let policy = snapshot.cluster_policies.iter().find(|policy| {
            policy
                .metadata
                .name
                .as_deref()
                .is_some_and(|name| error.object == format!("cnp/{name}"))
        })?;
        Some((
            "default".to_owned(),
            reference::<ClusterNetworkPolicy>(&policy.metadata),
            policy.metadata.generation.unwrap_or_default(),
        ))
    } else if error.kind == NetworkPolicy::KIND {
        let (namespace, name) = error.object.split_once('/')?;
        let policy = snapshot
            .policies
            .iter()
            .find(|policy| policy.id().namespace == namespace && policy.id().name == name)?;
        let metadata = ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: policy.uid.clone(),
            ..ObjectMeta::default()
        };
        Some((
            namespace.to_owned(),
            reference::<NetworkPolicy>(&metadata),
            policy.generation.unwrap_or_default(),
        ))
    } else {
        None
    }
}

fn reference<K: Resource>(metadata: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::API_VERSION.to_owned()),
        kind: Some(K::KIND.to_owned()),
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        uid: metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// `text` cut to [`NOTE_LIMIT`] bytes at a character boundary.
fn truncate(text: &str) -> String {
    let mut end = text.len().min(NOTE_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn cluster_policy(uid: &str, generation: i64) -> Arc<ClusterNetworkPolicy> {
        let mut policy: ClusterNetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "to-example", "uid": uid, "generation": generation},
            "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}}}
        }))
        .expect("a ClusterNetworkPolicy");
        policy.metadata.generation = Some(generation);
        Arc::new(policy)
    }

    fn unknown_peer() -> ModelError {
        ModelError {
            kind: ClusterNetworkPolicy::KIND,
            object: "cnp/to-example".to_owned(),
            field: "spec".to_owned(),
            problem: "1 peer(s) of a kind nftpol does not enforce".to_owned(),
        }
    }

    #[test]
    fn an_invalid_part_is_reported_once_per_generation() {
        let mut reported = BTreeSet::new();
        let mut snapshot = Snapshot {
            cluster_policies: vec![cluster_policy("u1", 1)],
            ..Snapshot::default()
        };
        let invalid = [unknown_peer()];
        let first = pending(&mut reported, "nftpol-n", &invalid, &snapshot);
        assert_eq!(first.len(), 1);
        let (namespace, event) = &first[0];
        assert_eq!(namespace, "default");
        let regarding = event.regarding.as_ref().expect("regarding");
        assert_eq!(regarding.uid.as_deref(), Some("u1"));
        assert_eq!(regarding.kind.as_deref(), Some("ClusterNetworkPolicy"));
        assert_eq!(event.reason.as_deref(), Some(REASON));

        let again = pending(&mut reported, "nftpol-n", &invalid, &snapshot);
        assert!(again.is_empty(), "same generation: {again:?}");

        snapshot.cluster_policies = vec![cluster_policy("u1", 2)];
        let edited = pending(&mut reported, "nftpol-n", &invalid, &snapshot);
        assert_eq!(edited.len(), 1, "a new generation is reported again");
    }

    #[test]
    fn parts_of_objects_not_in_the_snapshot_or_of_other_kinds_are_only_logged() {
        let mut reported = BTreeSet::new();
        let mut other_kind = unknown_peer();
        other_kind.kind = "Namespace";
        let events = pending(
            &mut reported,
            "nftpol-n",
            &[unknown_peer(), other_kind],
            &Snapshot::default(),
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_long_note_is_cut_at_a_character_boundary() {
        let text = "é".repeat(NOTE_LIMIT);
        let cut = truncate(&text);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(text.starts_with(&cut));
    }
}
