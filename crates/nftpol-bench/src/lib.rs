//! nftpol-bench: measures nftpol and writes `BENCHMARKS.md`.
//!
//! In: sizes and a seed. Out: one JSON result per measurement (each run in
//! its own process, so peak RSS is its own), `results.json`, and a Markdown
//! report with SVG plots (plotters).
//!
//! Measurements: [`compile`] (model, compile, diff), [`commit`] (netlink
//! batch against `nft -f`), [`churn`] (one-pod events through the
//! `Reconciler` and straight to the kernel), [`dataplane`] (new TCP
//! connections through the routers of lab namespaces: no table,
//! conntrack only, nftpol, linear rules), [`memory`] (a real `nftpol agent`
//! process against the fake API server), [`rejudge`] (the cost of one
//! commit that takes permission away from established flows), [`features`]
//! (re-judging and the verdict log on against off), [`cluster_policies`]
//! (ClusterNetworkPolicy's full-sync and per-connection cost), [`objects`]
//! (the kernel's commit cost per chain, rule, set and element),
//! [`policy_churn`] (one NetworkPolicy added or deleted, event to ack). The dataplane
//! measurements share the lab ([`lab`]), the traffic ([`probe`]) and the
//! interleaved rounds ([`rounds`]).
//! Everything that touches the kernel runs in network namespaces it creates
//! and removes itself; nothing touches the root namespace. Timings are
//! reported, never asserted.

pub mod churn;
pub mod cluster_policies;
pub mod commit;
pub mod compile;
pub mod dataplane;
pub mod features;
pub mod generate;
pub mod lab;
pub mod linear;
pub mod machine;
pub mod measure;
pub mod memory;
pub mod netns;
pub mod objects;
pub mod options;
pub mod policy_churn;
pub mod probe;
pub mod rejudge;
pub mod report;
pub mod rounds;
pub mod run;
