//! The lab's one error type. Every variant maps to exit code 2 and its
//! message says what the operator should do about it.

use std::io;

/// A lab run that could not complete (a probe mismatch is not an error:
/// see [`crate::compare`]).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The scenario YAML could not be loaded.
    #[error("scenario {scenario}: fix the YAML (it must be what `kubectl apply` accepts)")]
    Manifest {
        /// Scenario name as given by the caller.
        scenario: String,
        /// What the loader reported.
        #[source]
        source: nftpol_model::manifests::ManifestError,
    },
    /// An object in the scenario cannot be placed in the lab.
    #[error("{object}: {field}: {reason}; fix the scenario")]
    Scenario {
        /// `Kind namespace/name` of the offending object.
        object: String,
        /// The field path, e.g. `spec.nodeName`.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// `--nodes` conflicts with the scenario.
    #[error("--nodes {given}: {reason}")]
    Nodes {
        /// The value given.
        given: usize,
        /// Why it is rejected.
        reason: String,
    },
    /// Options that do not go together.
    #[error("{reason}")]
    Options {
        /// Which, and why.
        reason: String,
    },
    /// The process lacks the privileges to build namespaces.
    #[error("the lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces; run it with sudo")]
    NotRoot,
    /// Creating, entering or removing a network namespace failed.
    #[error("network namespace {name}: {operation} failed: {source}; check that /run/netns is writable and that you are root")]
    Netns {
        /// The namespace name.
        name: String,
        /// What was attempted.
        operation: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A netlink (rtnetlink) request that builds the topology failed.
    #[error(
        "network namespace {netns}: {what} failed: {source}; run `nftpol lab cleanup` and retry"
    )]
    Netlink {
        /// The namespace the request went to.
        netns: String,
        /// The request, e.g. `add route 10.244.1.10/32`.
        what: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// Writing a sysctl in a lab namespace failed.
    #[error("network namespace {netns}: writing {path} failed: {source}")]
    Sysctl {
        /// The namespace.
        netns: String,
        /// The `/proc/sys` path.
        path: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A probe or server socket could not be created or bound.
    #[error("{owner}: {what} failed: {source}; if this is EMFILE raise `ulimit -n`")]
    Socket {
        /// The pod (`ns/name`) or node owning the socket.
        owner: String,
        /// What was attempted.
        what: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The kernel lacks an nftables feature the agent needs.
    #[error("{node}: kernel feature check failed (load nf_tables with `modprobe nf_tables`, or use a kernel that has the missing feature)")]
    KernelFeature {
        /// The lab node whose agent ran the check.
        node: String,
        /// What the dataplane found missing.
        #[source]
        source: nftpol_netlink::FeatureError,
    },
    /// An agent could not open its dataplane or commit its first ruleset.
    #[error("{node}: the agent could not enforce the ruleset")]
    Agent {
        /// The lab node.
        node: String,
        /// The stage that failed, with its cause.
        #[source]
        stage: AgentStage,
    },
    /// The lab's kube-proxy emulation (`--via-service`) failed.
    #[error("{node}: installing the Service DNAT rules failed: {message}; install the `nft` binary (package nftables)")]
    Service {
        /// The lab node.
        node: String,
        /// What `nft` reported.
        message: String,
    },
    /// A helper thread or the async runtime failed.
    #[error("lab runtime: {what}: {source}")]
    Runtime {
        /// What was attempted.
        what: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The EXPECTED file is not the probe JSON shape.
    #[error("expected results: {reason}; it must be the JSON that `nftpol lab run --json` prints")]
    Expected {
        /// What is wrong with it.
        reason: String,
    },
    /// The binaries of `scripts/apiserver.sh build` are missing.
    #[error("{}: missing; build the API server tools with `scripts/apiserver.sh build` (needs Go), or pass --kube-tools DIR", path.display())]
    KubeTools {
        /// The file looked for.
        path: std::path::PathBuf,
    },
    /// The lab's real API server failed, or refused a write.
    #[error("the lab's API server: {what}: {detail}")]
    ApiServer {
        /// What was attempted.
        what: String,
        /// What went wrong (the server's or kubectl's words).
        detail: String,
    },
    /// A real `nftpol agent` of the lab failed.
    #[error("{node}: the agent {what}; its log ends:\n{log}")]
    LiveAgent {
        /// The lab node.
        node: String,
        /// What went wrong.
        what: String,
        /// The last lines of its log.
        log: String,
    },
    /// A step of a step file is malformed or cannot be applied.
    #[error("step {step}: {reason}")]
    Step {
        /// The step's name (or its position).
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// The run was interrupted by a signal; the lab was torn down.
    #[error("interrupted; the lab was torn down")]
    Interrupted,
}

/// The stage at which a lab node's agent failed, with the agent's own error
/// as the cause (kept typed: the binary prints the whole chain).
#[derive(Debug, thiserror::Error)]
pub enum AgentStage {
    /// Opening the kernel dataplane in the node's namespace.
    #[error("opening its dataplane")]
    Open(#[source] nftpol_netlink::OpenError),
    /// Compiling and committing the node's first ruleset.
    #[error("committing its first ruleset")]
    Reconcile(#[source] nftpol_agent::ReconcileError),
    /// The agent's thread panicked (its message went to stderr).
    #[error("its thread panicked")]
    Panicked,
}

impl LabError {
    /// The process exit code for this error: 2 for every kind (1 is
    /// reserved for probe mismatches, 0 for success).
    pub fn exit_code(&self) -> u8 {
        2
    }

    pub(crate) fn socket(owner: &str, what: impl Into<String>, source: io::Error) -> Self {
        Self::Socket {
            owner: owner.to_owned(),
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::{AgentStage, LabError};

    #[test]
    fn a_manifest_error_keeps_the_loader_error_as_its_typed_source() {
        let source = nftpol_model::manifests::parse("kind: [").expect_err("malformed YAML");
        let error = LabError::Manifest {
            scenario: "broken".to_owned(),
            source,
        };
        let cause = error.source().expect("the loader's error is the source");
        assert!(cause
            .downcast_ref::<nftpol_model::manifests::ManifestError>()
            .is_some());
    }

    #[test]
    fn an_agent_error_chains_node_stage_and_cause() {
        let error = LabError::Agent {
            node: "node-1".to_owned(),
            stage: AgentStage::Panicked,
        };
        let stage = error.source().expect("the stage is the source");
        assert!(matches!(
            stage.downcast_ref::<AgentStage>(),
            Some(AgentStage::Panicked)
        ));
        assert!(error.to_string().starts_with("node-1: "));
    }
}
