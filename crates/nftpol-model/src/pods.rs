//! The fields of a Pod that enforcement needs, and which pods count.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use internment::ArcIntern;
use k8s_openapi::api::core::v1::Pod;

use crate::vocabulary::Protocol;

/// A declared container port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerPort {
    /// The port's name, if any.
    pub name: Option<String>,
    /// The protocol (default TCP).
    pub protocol: Protocol,
    /// The port number.
    pub port: u16,
}

/// A pod reduced to what enforcement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The pod's namespace, interned: a namespace holds many pods.
    pub namespace: ArcIntern<str>,
    /// The pod's name (boxed, as `ips`: a view is kept per pod, and a
    /// `String`'s or `Vec`'s capacity word is 8 bytes of each).
    pub name: Box<str>,
    /// Labels, interned: the replicas of a workload carry equal label maps,
    /// and a small `BTreeMap` costs over half a kilobyte.
    pub labels: ArcIntern<BTreeMap<String, String>>,
    /// `spec.nodeName`, if scheduled; interned: a node hosts many pods.
    pub node_name: Option<ArcIntern<str>>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// Whether `status.phase` is Succeeded or Failed.
    pub terminal: bool,
    /// All parseable addresses of `status.podIPs` (or `status.podIP`), deduplicated.
    pub ips: Box<[IpAddr]>,
    /// Declared container ports with a valid number and protocol,
    /// interned: the replicas of a workload declare the same ones.
    pub ports: ArcIntern<Vec<ContainerPort>>,
}

impl PodView {
    /// Extracts the fields enforcement needs. Unparseable addresses and ports
    /// are dropped: they cannot carry traffic the kernel could match.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|status| status.pod_ips.as_ref())
            .map(|list| {
                list.iter()
                    .filter_map(|entry| entry.ip.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if ips.is_empty() {
            ips.extend(
                status
                    .and_then(|status| status.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        ips.sort_unstable();
        ips.dedup();
        let ports = spec
            .into_iter()
            .flat_map(|spec| {
                spec.containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
            })
            .flat_map(|container| container.ports.iter().flatten())
            .filter_map(|port| {
                Some(ContainerPort {
                    name: port.name.clone(),
                    protocol: Protocol::parse(port.protocol.as_deref())?,
                    port: u16::try_from(port.container_port)
                        .ok()
                        .filter(|number| *number > 0)?,
                })
            })
            .collect::<Vec<_>>();
        Self {
            namespace: ArcIntern::from(meta.namespace.as_deref().unwrap_or("default")),
            name: meta.name.as_deref().unwrap_or_default().into(),
            labels: ArcIntern::new(meta.labels.clone().unwrap_or_default()),
            node_name: spec
                .and_then(|spec| spec.node_name.as_deref())
                .map(ArcIntern::from),
            host_network: spec.and_then(|spec| spec.host_network).unwrap_or(false),
            terminal: matches!(
                status.and_then(|status| status.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ),
            ips: ips.into(),
            ports: ArcIntern::from(ports),
        }
    }

    /// Whether the pod takes part in enforcement: it has addresses of its
    /// own, is not on the host network and is not terminal.
    pub fn counts(&self) -> bool {
        !self.ips.is_empty() && !self.host_network && !self.terminal
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The port number a named port resolves to for `protocol`, if declared.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|port| port.protocol == protocol && port.name.as_deref() == Some(name))
            .map(|port| port.port)
    }
}

/// The counted pods, and which of them owns each address.
///
/// Two counted pods claiming one address is a conflict the API normally
/// prevents; the first by `namespace/name` owns it, so every layer agrees.
pub(crate) struct PodIndex {
    pub(crate) pods: Vec<Arc<PodView>>,
    /// The owner of each address (the pod itself, not its position: the
    /// policy path inserts and removes pods).
    owners: BTreeMap<IpAddr, Arc<PodView>>,
}

impl PodIndex {
    /// Indexes full Pod objects.
    pub(crate) fn from_pods(pods: &[Pod]) -> Self {
        Self::new(pods.iter().map(|pod| Arc::new(PodView::from_pod(pod))))
    }

    /// Indexes the views that count.
    pub(crate) fn new(views: impl IntoIterator<Item = Arc<PodView>>) -> Self {
        let mut views: Vec<Arc<PodView>> = views.into_iter().filter(|pod| pod.counts()).collect();
        views.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut owners = BTreeMap::new();
        for pod in &views {
            for ip in &pod.ips {
                owners.entry(*ip).or_insert_with(|| Arc::clone(pod));
            }
        }
        Self {
            pods: views,
            owners,
        }
    }

    /// Whether any counted pod has an address `test` holds for.
    pub(crate) fn any_address(&self, test: impl Fn(&IpAddr) -> bool) -> bool {
        self.pods.iter().flat_map(|pod| &pod.ips).any(test)
    }

    /// The pod owning `address`, if any.
    pub(crate) fn owner(&self, address: IpAddr) -> Option<&PodView> {
        self.owners.get(&address).map(AsRef::as_ref)
    }

    /// Removes the counted `pod`, which must own each of its addresses
    /// alone (the caller checks); `false` when it is not indexed.
    pub(crate) fn remove_sole_owner(&mut self, pod: &PodView) -> bool {
        let Ok(position) = self.position(pod) else {
            return false;
        };
        self.pods.remove(position);
        for ip in &pod.ips {
            self.owners.remove(ip);
        }
        true
    }

    /// Adds the counted `pod`, none of whose addresses any pod claims (the
    /// caller checks); `false` when a pod of its name is indexed.
    pub(crate) fn insert_sole_owner(&mut self, pod: &Arc<PodView>) -> bool {
        let Err(position) = self.position(pod) else {
            return false;
        };
        self.pods.insert(position, Arc::clone(pod));
        for ip in &pod.ips {
            self.owners.insert(*ip, Arc::clone(pod));
        }
        true
    }

    /// Where `pod` is (or would be) in the sorted pods.
    fn position(&self, pod: &PodView) -> Result<usize, usize> {
        self.pods.binary_search_by(|held| {
            (&held.namespace, &held.name).cmp(&(&pod.namespace, &pod.name))
        })
    }

    /// The addresses `pod` owns.
    pub(crate) fn owned_ips<'a>(&'a self, pod: &'a PodView) -> impl Iterator<Item = IpAddr> + 'a {
        pod.ips.iter().copied().filter(move |ip| {
            self.owner(*ip)
                .is_some_and(|owner| std::ptr::eq(owner, pod))
        })
    }
}
