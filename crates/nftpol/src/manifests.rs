//! Reading manifests from files and resolving command-line endpoints.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context};
use nftpol_model::{Cluster, Connection, PodView, Protocol};

/// Loads a YAML file, or every `*.yaml`/`*.yml` file of a directory in name order.
pub fn load(path: &Path) -> anyhow::Result<Cluster> {
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {}", path.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|file| {
                file.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut cluster = Cluster::default();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let parsed = nftpol_model::manifests::parse(&text)
            .with_context(|| format!("in {}", file.display()))?;
        for warning in &parsed.warnings {
            tracing::warn!(file = %file.display(), "{warning}");
        }
        cluster.extend([parsed.cluster]);
    }
    Ok(cluster)
}

/// Builds a connection from `namespace/pod` or IP endpoints and `PORT/PROTO`.
pub fn connection(
    cluster: &Cluster,
    from: &str,
    to: &str,
    port: &str,
) -> anyhow::Result<Connection> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "TCP"));
    let Some(protocol) = Protocol::parse(Some(&protocol.to_ascii_uppercase())) else {
        bail!("unknown protocol in {port:?}: use TCP, UDP or SCTP");
    };
    Ok(Connection {
        source: endpoint(cluster, from)?,
        destination: endpoint(cluster, to)?,
        protocol,
        port: number
            .parse()
            .with_context(|| format!("{number:?} is not a port number"))?,
    })
}

fn endpoint(cluster: &Cluster, text: &str) -> anyhow::Result<IpAddr> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    pod_address(cluster, text, None)
}

/// The address of pod `namespace/name` (`text`): its first, or its first
/// IPv4 (`Some(true)`) or IPv6 (`Some(false)`) one.
pub fn pod_address(cluster: &Cluster, text: &str, ipv4: Option<bool>) -> anyhow::Result<IpAddr> {
    let Some((namespace, name)) = text.split_once('/') else {
        bail!("{text:?} is neither an IP address nor namespace/pod");
    };
    let pod = cluster
        .pods
        .iter()
        .map(PodView::from_pod)
        .find(|pod| pod.namespace == namespace && &*pod.name == name)
        .with_context(|| format!("no pod {namespace}/{name} in the cluster read"))?;
    let family = match ipv4 {
        None => "IP",
        Some(true) => "IPv4",
        Some(false) => "IPv6",
    };
    pod.ips
        .iter()
        .copied()
        .find(|ip| ipv4.is_none_or(|wanted| ip.is_ipv4() == wanted))
        .with_context(|| format!("pod {namespace}/{name} has no {family} address"))
}
