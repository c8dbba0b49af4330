//! nftpol-agent: the reconcile path every enforcing process shares.
//!
//! One reconcile = snapshot of the cluster → policy model → ruleset IR →
//! diff against the last committed IR → one atomic batch through a
//! [`Dataplane`]. The lab feeds it from a scenario file; the same code runs
//! for every node it builds.
//!
//! The first reconcile, and every reconcile after a failure, is a full sync:
//! it reads the table back from the kernel and diffs against what is really
//! there, so a restarted agent adopts the ruleset of its predecessor without
//! a window of unfiltered traffic, and a rejected batch (which leaves the
//! kernel unchanged) is retried from the truth.

mod reconcile;

pub use nftpol_netlink::Dataplane;
pub use reconcile::{ReconcileError, ReconcileReport, Reconciler};
