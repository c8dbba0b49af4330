//! nftpol-lab: runs a NetworkPolicy scenario on a throwaway cluster made of
//! network namespaces, enforced by real nftpol agents, and reports which pod
//! pairs connect.
//!
//! **In:** a scenario (multi-document YAML of Namespaces, Pods,
//! NetworkPolicies, ClusterNetworkPolicies and Nodes, as `kubectl` accepts
//! it) and [`RunOptions`].
//! **Out:** a [`Report`] (JSON via [`Report::to_json`], e2e-style truth
//! tables via [`Report::truth_table`]), and [`compare`] against an EXPECTED
//! file. [`cleanup`] removes namespaces left by killed runs.
//!
//! **Never:** touches the root network namespace (the fabric between nodes
//! is a namespace of its own), prints to stdout, or leaves a namespace
//! behind on success, error or SIGINT/SIGTERM.
//!
//! # Steps of a run ([`run`])
//! 1. Load with `nftpol_model::manifests::parse`, then [`plan::place`]:
//!    nodes (the scenario's Node documents, see [`nodes`], else `node-<k>`),
//!    pod IPs (`10.244.<k>.10…` per node in document order), phase,
//!    namespace labels, and Node objects with their pod CIDRs.
//! 2. [`topology::Topology::build`]: a namespace per node and per pod,
//!    routed veths as kindnet's ptp CNI does (see that module).
//! 3. [`probe::start_servers`]: a server per declared TCP/UDP port.
//! 4. With `--via-service`, [`service::install`]: kube-proxy-style DNAT.
//! 5. Enforcement: one agent per node, in the node's namespace, through
//!    `nftpol_agent::Reconciler` and `nftpol_netlink::KernelDataplane`, as
//!    `nftpol agent` does; probing waits for every agent's first commit.
//!    With [`RunOptions::live`] instead ([`live`]): a real kube-apiserver
//!    ([`apiserver`]) holds the scenario, and each node runs the real
//!    `nftpol agent` binary against it.
//! 6. [`probe::probe_all`]: every pod pair, port and address family both
//!    pods have, plus node → local pod.
//! 7. Live runs only: each step of the step file ([`steps`]) changes the
//!    cluster through the server, and the probes run again.
//! 8. Tear down.
//!
//! # Design choices this crate owns
//! - **Namespaces are made in-process** (unshare + bind mount on
//!   `/run/netns`, as `ip netns add` does) rather than by spawning `ip`:
//!   no process per namespace, and `ip netns` still lists them.
//! - **Links, addresses, routes and neighbours go through rtnetlink**, one
//!   socket per namespace opened by a thread that entered it. Interface
//!   indexes and MACs are assigned by the lab and every neighbour entry is
//!   static, so the build needs no look-ups and no ARP/ND/DAD wait; a
//!   9-pod, 2-node lab builds in well under 100 ms, so `ip -batch` was not
//!   needed for speed.
//! - **Names**: namespaces are `nftpol-lab-<pid>-<random>-{fabric,n<k>,p<i>-<ns>-<pod>}`;
//!   the pid lets [`cleanup`] spare runs that are still alive. Interface
//!   names live inside the lab's own namespaces (`eth0`, `veth<i>`,
//!   `node<k>`, `br0`), so they cannot collide with anything.
//! - **Probes** run all at once on a tokio runtime; sockets are created by a
//!   thread inside the source namespace. TCP: connect within 1 s. UDP: echo
//!   within 300 ms, three tries.
//! - **`--via-service`** uses the `nft` binary for its lab-only kube-proxy
//!   table; nftpol's own dataplane never does.

pub mod apiserver;
mod enforce;
pub mod error;
pub mod live;
pub mod netns;
pub mod nodes;
pub mod plan;
pub mod probe;
pub mod report;
mod run;
pub mod service;
pub mod steps;
pub mod topology;

pub use error::{AgentStage, LabError};
pub use netns::cleanup;
pub use report::{compare, Mismatch, NodeProbe, Probe, Report, StepReport};
pub use run::{run, run_inspected, Inspection, RunOptions};
