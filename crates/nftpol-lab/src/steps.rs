//! Step files: changes made to the live cluster mid-run (`nftpol lab run
//! --apiserver real --steps FILE`), each followed by the probes again, so a
//! run shows enforcement following the cluster.
//!
//! ```yaml
//! steps:
//! - name: open x to y                 # shown above its truth tables
//!   apply: |                          # NetworkPolicies / ClusterNetworkPolicies,
//!     apiVersion: networking.k8s.io/v1  #   created or replaced (server-side apply)
//!     kind: NetworkPolicy
//!     ...
//!   labels:                           # a merge patch of metadata.labels
//!   - object: Pod x/b                 # Pod NS/NAME, Namespace NAME or Node NAME
//!     set: {role: db}
//!     remove: [tier]
//!   delete: [NetworkPolicy x/deny-all, ClusterNetworkPolicy admin-deny]
//!   expect: open-x-to-y.expected.json # optional, relative to the step file
//! ```
//!
//! Within a step the changes go in that order: apply, labels, delete. The
//! lab's pods, namespaces and nodes are built once, so a step cannot add or
//! remove them (it can relabel them). Parsing is pure apart from reading the
//! expectation files.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use serde::Deserialize;

use crate::error::LabError;

/// One change to the live cluster and what the probes should show after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its name, as the step file gives it.
    pub name: String,
    /// Policies created or replaced.
    pub apply: Vec<Policy>,
    /// Label changes.
    pub labels: Vec<LabelChange>,
    /// Policies removed.
    pub delete: Vec<PolicyRef>,
    /// The EXPECTED JSON for the probes after this step, if any.
    pub expect: Option<String>,
}

/// A policy a step applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// A NetworkPolicy.
    Network(NetworkPolicy),
    /// A ClusterNetworkPolicy.
    Cluster(ClusterNetworkPolicy),
}

/// What kind of object a step names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A Pod (namespaced).
    Pod,
    /// A Namespace.
    Namespace,
    /// A Node.
    Node,
    /// A NetworkPolicy (namespaced).
    NetworkPolicy,
    /// A ClusterNetworkPolicy.
    ClusterNetworkPolicy,
}

impl Kind {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "Pod" => Self::Pod,
            "Namespace" => Self::Namespace,
            "Node" => Self::Node,
            "NetworkPolicy" => Self::NetworkPolicy,
            "ClusterNetworkPolicy" => Self::ClusterNetworkPolicy,
            _ => return None,
        })
    }

    fn is_namespaced(self) -> bool {
        matches!(self, Self::Pod | Self::NetworkPolicy)
    }
}

/// `Kind namespace/name` or `Kind name`, as a step writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectRef {
    kind: Kind,
    /// Its namespace, for namespaced kinds.
    namespace: Option<String>,
    name: String,
}

impl ObjectRef {
    fn parse(text: &str) -> Result<Self, String> {
        let (kind, id) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{text:?}: write `Kind namespace/name` or `Kind name`"))?;
        let kind = Kind::parse(kind).ok_or_else(|| {
            format!("{text:?}: kind {kind:?} is not Pod, Namespace, Node, NetworkPolicy or ClusterNetworkPolicy")
        })?;
        let id = id.trim();
        let (namespace, name) = match (kind.is_namespaced(), id.split_once('/')) {
            (true, Some((namespace, name))) if !namespace.is_empty() && !name.is_empty() => {
                (Some(namespace.to_owned()), name.to_owned())
            }
            (true, _) => return Err(format!("{text:?}: a {kind:?} is named `namespace/name`")),
            (false, None) if !id.is_empty() => (None, id.to_owned()),
            (false, _) => return Err(format!("{text:?}: a {kind:?} is named by its name alone")),
        };
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }
}

impl ObjectRef {
    fn id(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{:?} {namespace}/{}", self.kind, self.name),
            None => format!("{:?} {}", self.kind, self.name),
        }
    }

    fn into_labelled(self) -> Result<Labelled, String> {
        match self.kind {
            Kind::Pod => Ok(Labelled::Pod {
                namespace: self.namespace.unwrap_or_default(),
                name: self.name,
            }),
            Kind::Namespace => Ok(Labelled::Namespace(self.name)),
            Kind::Node => Ok(Labelled::Node(self.name)),
            Kind::NetworkPolicy | Kind::ClusterNetworkPolicy => Err(format!(
                "{}: labels change a Pod, a Namespace or a Node",
                self.id()
            )),
        }
    }

    fn into_policy(self) -> Result<PolicyRef, String> {
        match self.kind {
            Kind::NetworkPolicy => Ok(PolicyRef::Network {
                namespace: self.namespace.unwrap_or_default(),
                name: self.name,
            }),
            Kind::ClusterNetworkPolicy => Ok(PolicyRef::Cluster(self.name)),
            Kind::Pod | Kind::Namespace | Kind::Node => Err(format!(
                "{}: a step deletes policies only (the lab's pods, namespaces and nodes are built once)",
                self.id()
            )),
        }
    }
}

/// An object whose labels a step changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labelled {
    /// Pod `namespace/name`.
    Pod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A Namespace.
    Namespace(String),
    /// A Node.
    Node(String),
}

impl std::fmt::Display for Labelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pod { namespace, name } => write!(f, "Pod {namespace}/{name}"),
            Self::Namespace(name) => write!(f, "Namespace {name}"),
            Self::Node(name) => write!(f, "Node {name}"),
        }
    }
}

/// A policy a step deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    /// NetworkPolicy `namespace/name`.
    Network {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A ClusterNetworkPolicy.
    Cluster(String),
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Network { namespace, name } => write!(f, "NetworkPolicy {namespace}/{name}"),
            Self::Cluster(name) => write!(f, "ClusterNetworkPolicy {name}"),
        }
    }
}

/// A merge patch of one object's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    /// A Pod, Namespace or Node.
    pub object: Labelled,
    /// Labels set (added or overwritten).
    pub set: BTreeMap<String, String>,
    /// Labels removed.
    pub remove: Vec<String>,
}

impl LabelChange {
    /// The JSON merge patch (RFC 7386) that makes this change.
    pub fn merge_patch(&self) -> serde_json::Value {
        let mut labels = serde_json::Map::new();
        for key in &self.remove {
            labels.insert(key.clone(), serde_json::Value::Null);
        }
        for (key, value) in &self.set {
            labels.insert(key.clone(), serde_json::Value::String(value.clone()));
        }
        serde_json::json!({ "metadata": { "labels": labels } })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    apply: Option<String>,
    #[serde(default)]
    labels: Vec<RawLabels>,
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    object: String,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// Reads the step file at `path` and the expectation files it names.
pub fn load(path: &Path) -> Result<Vec<Step>, LabError> {
    let text = std::fs::read_to_string(path).map_err(|error| LabError::Step {
        step: path.display().to_string(),
        reason: format!("reading the step file: {error}"),
    })?;
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, |name| {
        let file = directory.join(name);
        std::fs::read_to_string(&file)
            .map_err(|error| format!("reading {}: {error}", file.display()))
    })
}

/// Parses a step file; `read` returns the text of an expectation file by
/// the name the step gives.
pub fn parse(
    text: &str,
    read: impl Fn(&str) -> Result<String, String>,
) -> Result<Vec<Step>, LabError> {
    let file: RawFile = serde_yaml::from_str(text).map_err(|error| LabError::Step {
        step: "file".to_owned(),
        reason: format!("not a step file ({error}); see `nftpol lab run --help`"),
    })?;
    if file.steps.is_empty() {
        return Err(LabError::Step {
            step: "file".to_owned(),
            reason: "it lists no steps".to_owned(),
        });
    }
    file.steps
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let label = if raw.name.trim().is_empty() {
                format!("#{}", index + 1)
            } else {
                raw.name.clone()
            };
            step(raw, &read).map_err(|reason| LabError::Step {
                step: label,
                reason,
            })
        })
        .collect()
}

fn step(raw: RawStep, read: &impl Fn(&str) -> Result<String, String>) -> Result<Step, String> {
    if raw.name.trim().is_empty() {
        return Err("give the step a name".to_owned());
    }
    let apply = match &raw.apply {
        Some(manifests) => policies(manifests)?,
        None => Vec::new(),
    };
    let labels = raw
        .labels
        .into_iter()
        .map(|change| {
            let object = ObjectRef::parse(&change.object)?.into_labelled()?;
            if change.set.is_empty() && change.remove.is_empty() {
                return Err(format!(
                    "{object}: the label change sets and removes nothing"
                ));
            }
            if let Some(key) = change
                .remove
                .iter()
                .find(|key| change.set.contains_key(*key))
            {
                return Err(format!("{object}: label {key:?} is both set and removed"));
            }
            Ok(LabelChange {
                object,
                set: change.set,
                remove: change.remove,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let delete = raw
        .delete
        .iter()
        .map(|text| ObjectRef::parse(text)?.into_policy())
        .collect::<Result<Vec<_>, _>>()?;
    if apply.is_empty() && labels.is_empty() && delete.is_empty() {
        return Err("it changes nothing: give it `apply`, `labels` or `delete`".to_owned());
    }
    let expect = raw.expect.as_deref().map(read).transpose()?;
    Ok(Step {
        name: raw.name,
        apply,
        labels,
        delete,
        expect,
    })
}

/// The policies of a step's `apply` manifests; anything else is refused.
fn policies(manifests: &str) -> Result<Vec<Policy>, String> {
    let parsed =
        nftpol_model::manifests::parse(manifests).map_err(|error| format!("apply: {error}"))?;
    let cluster = parsed.cluster;
    if !(cluster.pods.is_empty() && cluster.namespaces.is_empty() && cluster.nodes.is_empty()) {
        return Err(
            "apply: only NetworkPolicies and ClusterNetworkPolicies (the lab's pods, namespaces and nodes are built once; relabel them with `labels`)"
                .to_owned(),
        );
    }
    let policies: Vec<Policy> = cluster
        .policies
        .into_iter()
        .map(Policy::Network)
        .chain(cluster.cluster_policies.into_iter().map(Policy::Cluster))
        .collect();
    if policies.is_empty() {
        return Err("apply: no NetworkPolicy or ClusterNetworkPolicy in it".to_owned());
    }
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(name: &str) -> Result<String, String> {
        Err(format!("no file {name}"))
    }

    fn error(text: &str) -> String {
        parse(text, no_files)
            .expect_err("the step file is refused")
            .to_string()
    }

    const POLICY: &str = "apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: deny, namespace: x}\n    spec: {podSelector: {}}\n";

    #[test]
    fn a_step_file_reads_in_order_with_its_expectations() {
        let text = format!(
            "steps:\n- name: isolate\n  apply: |\n    {POLICY}  expect: isolate.json\n\
             - name: relabel\n  labels:\n  - object: Pod x/b\n    set: {{role: db}}\n    remove: [tier]\n  - object: Namespace y\n    set: {{team: a}}\n\
             - name: reopen\n  delete: [NetworkPolicy x/deny]\n"
        );
        let steps = parse(&text, |name| Ok(format!("contents of {name}"))).expect("a step file");
        assert_eq!(
            steps
                .iter()
                .map(|step| step.name.as_str())
                .collect::<Vec<_>>(),
            ["isolate", "relabel", "reopen"]
        );
        assert!(
            matches!(&steps[0].apply[..], [Policy::Network(policy)] if policy.metadata.name.as_deref() == Some("deny"))
        );
        assert_eq!(steps[0].expect.as_deref(), Some("contents of isolate.json"));
        assert_eq!(steps[1].expect, None);
        let relabel = &steps[1].labels[0];
        assert_eq!(relabel.object.to_string(), "Pod x/b");
        assert_eq!(
            relabel.merge_patch(),
            serde_json::json!({"metadata": {"labels": {"role": "db", "tier": null}}})
        );
        assert_eq!(
            steps[1].labels[1].object,
            Labelled::Namespace("y".to_owned())
        );
        assert_eq!(
            steps[2].delete,
            [PolicyRef::Network {
                namespace: "x".to_owned(),
                name: "deny".to_owned()
            }]
        );
    }

    #[test]
    fn malformed_steps_are_refused_naming_the_step() {
        for (text, says) in [
            ("steps: []\n", "step file: it lists no steps"),
            ("steps:\n- name: a\n  sleep: 1\n", "step file: not a step file"),
            ("steps:\n- name: a\n", "step a: it changes nothing"),
            ("steps:\n- name: ''\n  delete: [NetworkPolicy x/p]\n", "step #1: give the step a name"),
            ("steps:\n- name: a\n  delete: [Pod x/p]\n", "step a: Pod x/p: a step deletes policies only"),
            ("steps:\n- name: a\n  delete: [NetworkPolicy p]\n", "is named `namespace/name`"),
            ("steps:\n- name: a\n  delete: [Service x/p]\n", "kind \"Service\" is not"),
            ("steps:\n- name: a\n  labels:\n  - object: NetworkPolicy x/p\n    set: {a: b}\n", "labels change a Pod"),
            ("steps:\n- name: a\n  labels:\n  - object: Node n1\n", "sets and removes nothing"),
            ("steps:\n- name: a\n  labels:\n  - object: Node n1\n    set: {a: b}\n    remove: [a]\n", "\"a\" is both set and removed"),
            ("steps:\n- name: a\n  apply: |\n    apiVersion: v1\n    kind: Namespace\n    metadata: {name: q}\n", "only NetworkPolicies and ClusterNetworkPolicies"),
            ("steps:\n- name: a\n  delete: [NetworkPolicy x/p]\n  expect: gone.json\n", "step a: no file gone.json"),
        ] {
            let message = error(text);
            assert!(message.contains(says), "{text:?}: {message:?} does not say {says:?}");
        }
    }
}
