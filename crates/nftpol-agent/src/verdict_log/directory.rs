//! Who an address is, and what a log prefix means, as of the last commit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use internment::ArcIntern;
use nftpol_model::PodView;
use nftpol_ruleset::catalogue::{ChainOrigin, Provenance};
use nftpol_ruleset::log_prefix::LogPrefix;
use nftpol_ruleset::verdict_log::{Decider, LogCatalogue};

use nftpol_model::PodChange;

/// What an address belongs to. Both share what the pod store holds (a
/// formatted name per address would cost about 50 bytes a pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A counted pod, named `namespace/name`.
    Pod(Arc<PodView>),
    /// A node, through one of its hostNetwork pods: `node:NAME`.
    Node(ArcIntern<str>),
}

/// The names the verdict log needs: the node, the meaning of each log id
/// of the committed ruleset, and the owner of every pod address.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    node: String,
    catalogue: LogCatalogue,
    endpoints: HashMap<IpAddr, Endpoint>,
}

impl Directory {
    /// The directory of node `node`'s committed ruleset (its provenance)
    /// and the cluster's pods.
    pub fn new(node: &str, provenance: &Provenance, pods: &[Arc<PodView>]) -> Self {
        let mut directory = Self {
            node: node.to_owned(),
            catalogue: LogCatalogue::new(provenance),
            endpoints: HashMap::with_capacity(pods.len()),
        };
        for pod in pods {
            directory.add(pod);
        }
        directory
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The meaning of every log id of the committed ruleset.
    pub fn catalogue(&self) -> &LogCatalogue {
        &self.catalogue
    }

    /// What `prefix` means on this node.
    pub fn decider(&self, prefix: &LogPrefix) -> Decider {
        self.catalogue.decider(prefix)
    }

    /// `namespace/name` of the pod owning `address`, `node:NAME` for a
    /// node's address, `external` otherwise.
    pub fn name_of(&self, address: IpAddr) -> String {
        match self.endpoints.get(&address) {
            Some(Endpoint::Pod(pod)) => pod.key(),
            Some(Endpoint::Node(node)) => format!("node:{node}"),
            None => "external".to_owned(),
        }
    }

    /// Follows a policy-path commit that removed (or replaced) the chains of
    /// `gone` and added those of `new`.
    pub fn follow_chains(&mut self, gone: &[ChainOrigin], new: &[ChainOrigin]) {
        self.catalogue.follow(gone, new);
    }

    /// Follows pod changes of an element-only commit.
    pub fn apply(&mut self, changes: &[PodChange]) {
        for change in changes {
            if let Some(before) = &change.before {
                for address in &before.ips {
                    self.endpoints.remove(address);
                }
            }
            if let Some(after) = &change.after {
                self.add(after);
            }
        }
    }

    fn add(&mut self, pod: &Arc<PodView>) {
        if pod.terminal {
            return;
        }
        let endpoint = match (&pod.node_name, pod.host_network) {
            (Some(node), true) => Endpoint::Node(node.clone()),
            (None, true) => return,
            (_, false) => Endpoint::Pod(Arc::clone(pod)),
        };
        for address in &pod.ips {
            // The first claim of an address wins; the model counts no pod
            // twice either.
            self.endpoints.entry(*address).or_insert(endpoint.clone());
        }
    }
}

/// The directory shared by the reconciler (which writes it after each
/// commit) and the verdict log reader (which reads it per packet batch).
#[derive(Debug, Clone, Default)]
pub struct LogDirectory(Arc<RwLock<Directory>>);

impl LogDirectory {
    /// Replaces the directory.
    pub fn publish(&self, directory: Directory) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = directory;
    }

    /// Changes the directory in place.
    pub fn update(&self, change: impl FnOnce(&mut Directory)) {
        change(&mut self.0.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// Reads the directory.
    pub fn read<T>(&self, read: impl FnOnce(&Directory) -> T) -> T {
        read(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}
