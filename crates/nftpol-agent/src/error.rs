//! The agent's errors.

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A watch task ended before its initial list completed.
    #[error("the {0} watch ended before its initial list completed")]
    WatchEnded(&'static str),
    /// Every watch ended, so no change can reach the agent any more.
    #[error("every watch ended")]
    WatchesEnded,
    /// The reconcile task panicked; the kernel keeps its last committed ruleset.
    #[error("the reconcile task failed")]
    ReconcileTask(#[source] tokio::task::JoinError),
    /// The counter read task panicked; the kernel keeps its last committed ruleset.
    #[error("the counter read task failed")]
    CounterTask(#[source] tokio::task::JoinError),
    /// The conntrack flush task panicked; the kernel keeps its last committed ruleset.
    #[error("the conntrack flush task failed")]
    ConntrackTask(#[source] tokio::task::JoinError),
    /// The HTTP endpoint failed.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}
