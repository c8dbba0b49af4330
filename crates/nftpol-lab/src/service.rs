//! `--via-service`: a lab-only emulation of kube-proxy's nftables mode.
//!
//! Each pod gets a ClusterIP (`10.96.0.0/16`, and `fd00:10:96::/112` when it
//! has IPv6) and every node DNATs ClusterIP → pod IP, port-preserving, in
//! prerouting and output at priority `dstnat`, in a table of its own
//! (`table inet kube-proxy-lab`), so nftpol's hooks see the translated
//! destination as they would behind kube-proxy. Hairpin traffic (a pod
//! reaching itself through its ClusterIP) is SNATed to the node address as
//! kube-proxy masquerades it; otherwise the reply would bypass the un-DNAT.
//! The rules are loaded with the `nft` binary: this is test scaffolding, not
//! nftpol's dataplane, which speaks netlink itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use crate::error::LabError;
use crate::plan::{LabNode, LabPod, Plan};
use crate::topology::Topology;

/// Host number of the first ClusterIP (pod `i` gets `FIRST + i`).
const FIRST_CLUSTER_IP_HOST: u32 = 10;

/// The ClusterIPs of each pod (same families as its addresses, same order).
pub fn cluster_ips(plan: &Plan) -> BTreeMap<String, Vec<IpAddr>> {
    plan.pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let host = FIRST_CLUSTER_IP_HOST + u32::try_from(i).unwrap_or(u32::MAX - 16);
            let ips = pod
                .addresses
                .iter()
                .map(|a| match a {
                    IpAddr::V4(_) => {
                        let [_, _, hi, lo] = host.to_be_bytes();
                        IpAddr::V4(Ipv4Addr::new(10, 96, hi, lo))
                    }
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(
                        (0xfd00_0010_0096_u128 << 80) | u128::from(host),
                    )),
                })
                .collect();
            (pod.id.clone(), ips)
        })
        .collect()
}

/// The ruleset for one node, in nft syntax.
pub fn render(plan: &Plan, node: &LabNode, cluster_ips: &BTreeMap<String, Vec<IpAddr>>) -> String {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for pod in &plan.pods {
        for (cluster_ip, pod_ip) in cluster_ips
            .get(&pod.id)
            .into_iter()
            .flatten()
            .zip(&pod.addresses)
        {
            let element = format!("{cluster_ip} : {pod_ip}");
            if pod_ip.is_ipv4() {
                v4.push(element);
            } else {
                v6.push(element);
            }
        }
    }
    let local: Vec<&LabPod> = plan
        .pods
        .iter()
        .filter(|p| p.node == node.index && !p.host_network)
        .collect();
    let hairpin = |v6: bool| -> Vec<String> {
        local
            .iter()
            .flat_map(|p| &p.addresses)
            .filter(|a| a.is_ipv6() == v6)
            .map(|a| format!("{a} . {a}"))
            .collect()
    };
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "table inet kube-proxy-lab {{");
    for (name, kind, elements) in [
        ("cluster-ips-v4", "ipv4_addr : ipv4_addr", &v4),
        ("cluster-ips-v6", "ipv6_addr : ipv6_addr", &v6),
        ("hairpin-v4", "ipv4_addr . ipv4_addr", &hairpin(false)),
        ("hairpin-v6", "ipv6_addr . ipv6_addr", &hairpin(true)),
    ] {
        let keyword = if kind.contains(':') { "map" } else { "set" };
        let _ = writeln!(out, "  {keyword} {name} {{\n    type {kind}");
        if !elements.is_empty() {
            let _ = writeln!(out, "    elements = {{ {} }}", elements.join(", "));
        }
        let _ = writeln!(out, "  }}");
    }
    // -100 is `dstnat`; nft before 1.0.7 accepts that name in prerouting only.
    for (chain, hook) in [("nat-prerouting", "prerouting"), ("nat-output", "output")] {
        let _ = writeln!(
            out,
            "  chain {chain} {{\n    type nat hook {hook} priority -100; policy accept;\n    dnat ip to ip daddr map @cluster-ips-v4\n    dnat ip6 to ip6 daddr map @cluster-ips-v6\n  }}"
        );
    }
    let _ = writeln!(
        out,
        "  chain nat-postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    ct status dnat ip saddr . ip daddr @hairpin-v4 snat ip to {}\n    ct status dnat ip6 saddr . ip6 daddr @hairpin-v6 snat ip6 to {}\n  }}\n}}",
        node.ipv4, node.ipv6
    );
    out
}

/// Loads the rules into every node and returns the ClusterIPs to dial.
pub fn install(
    plan: &Plan,
    topology: &Topology,
) -> Result<BTreeMap<String, Vec<IpAddr>>, LabError> {
    let ips = cluster_ips(plan);
    for node in &plan.nodes {
        let ruleset = render(plan, node, &ips);
        let fail = |message: String| LabError::Service {
            node: node.name.clone(),
            message,
        };
        let output = topology.node(node.index).run(|| {
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(ruleset.as_bytes())?;
            }
            child.wait_with_output()
        })?;
        let output = output.map_err(|e| fail(format!("running nft: {e}")))?;
        if !output.status.success() {
            return Err(fail(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
    }
    tracing::info!(
        services = ips.len(),
        "ClusterIP DNAT installed on every node"
    );
    Ok(ips)
}
