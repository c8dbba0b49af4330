//! nftpol-agent: the enforcing process — reflectors → coalesce → reconcile
//! → [`Dataplane`]; metrics; health.
//!
//! In: a Kubernetes API (through a `kube::Client`) and a [`Dataplane`]. Out:
//! table `inet nftpol` kept in step with the cluster, `/healthz`, `/readyz`
//! and `/metrics`. It never touches the kernel itself (only through the
//! `Dataplane`) and never decides rule shapes (that is `nftpol-ruleset`).
//!
//! One reconcile = snapshot of the cluster → policy model → ruleset IR →
//! diff against the last committed IR → one atomic batch through a
//! [`Dataplane`]. The lab feeds it from a scenario file; the agent feeds it
//! from reflectors ([`watch`]) through a bounded-delay coalescer
//! ([`coalesce`]).
//!
//! The first reconcile, and every reconcile after a failure, is a full sync:
//! it reads the table back from the kernel and diffs against what is really
//! there, so a restarted agent adopts the ruleset of its predecessor without
//! a window of unfiltered traffic, and a rejected batch (which leaves the
//! kernel unchanged) is retried from the truth.
//!
//! Design choices owned here:
//! - the first reconcile waits until every initial list is synced;
//! - objects are stripped to what enforcement reads as they arrive
//!   ([`strip`]);
//! - model, compile and the netlink batch run in `spawn_blocking`, never on
//!   the async executor;
//! - a failed reconcile keeps the old state and retries with backoff
//!   ([`backoff`]); a lost API server keeps the last committed ruleset;
//! - stopping the agent leaves the ruleset in place: removal is explicit
//!   (`Dataplane::delete_table`, `nftpol cleanup`).

mod agent;
pub mod backoff;
pub mod coalesce;
mod error;
pub mod events;
pub mod http;
pub mod metrics;
mod reconcile;
pub mod strip;
pub mod traffic;
pub mod verdict_log;
pub mod view_store;
pub mod watch;

pub use agent::{Agent, AgentConfig, Progress};
pub use error::AgentError;
pub use nftpol_model::{PodChange, PolicyChange};
pub use nftpol_netlink::Dataplane;
pub use reconcile::{ReconcileError, ReconcileReport, Reconciler, Sync};
