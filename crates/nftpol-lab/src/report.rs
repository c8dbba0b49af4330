//! Probe results: the JSON shape, the truth table and the comparison with
//! an EXPECTED file. Pure: nothing here touches the system.
//!
//! A probe is one connection in one address family: a dual-stack pair is
//! two probes, so an IPv6 hole never hides behind an IPv4 block. In JSON a
//! probe's `family` is `"IPv4"` or `"IPv6"`; an EXPECTED entry without one
//! means IPv4 (what every single-stack scenario written before families
//! were reported holds).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;

pub use nftpol_ruleset::catalogue::Family;
use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// The result of one lab run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per (from pod, to pod, destination port, protocol, address
    /// family both pods have), sorted.
    pub probes: Vec<Probe>,
    /// One entry per (node, local pod, port, protocol, the pod's family),
    /// sorted.
    pub node_probes: Vec<NodeProbe>,
    /// The scenario name (not part of the JSON).
    #[serde(skip)]
    pub scenario: String,
    /// How many lab nodes ran (not part of the JSON).
    #[serde(skip)]
    pub nodes: usize,
    /// Whether probes went through ClusterIPs (not part of the JSON).
    #[serde(skip)]
    pub via_service: bool,
    /// The verdict log lines the nodes wrote during the probes (with
    /// `--verdicts`), node by node in time order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<serde_json::Value>,
    /// The probes after each step of a step file (`--steps`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
}

/// The probes after one step of a step file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// As [`Report::probes`].
    pub probes: Vec<Probe>,
    /// As [`Report::node_probes`].
    pub node_probes: Vec<NodeProbe>,
    /// How many rounds of probes it took to match the step's expectation
    /// (1 without one; not part of the JSON: it varies between runs).
    #[serde(skip)]
    pub rounds: usize,
}

impl StepReport {
    /// The step's probes as a report of their own, for [`compare`].
    pub fn as_report(&self) -> Report {
        Report {
            probes: self.probes.clone(),
            node_probes: self.node_probes.clone(),
            ..Report::default()
        }
    }
}

/// A pod-to-pod probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Source pod, `namespace/name`.
    pub from: String,
    /// Destination pod, `namespace/name`.
    pub to: String,
    /// Destination container port.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The address family of both ends (`"IPv4"` or `"IPv6"`; IPv4 when an
    /// EXPECTED entry leaves it out).
    #[serde(default = "ipv4", with = "family_json")]
    pub family: Family,
    /// Whether it connected.
    pub connected: bool,
    /// Not probed (SCTP: no sockets on this kernel).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skipped: bool,
}

/// A probe from a node to a pod on it (kubelet's view; must always connect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProbe {
    /// Source node: its Node document's name, or `node-<k>`.
    pub node: String,
    /// Destination pod, `namespace/name`.
    pub to: String,
    /// Destination container port.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The address family probed.
    #[serde(default = "ipv4", with = "family_json")]
    pub family: Family,
    /// Whether it connected.
    pub connected: bool,
    /// Not probed (SCTP).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skipped: bool,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(value: &bool) -> bool {
    !*value
}

fn ipv4() -> Family {
    Family::V4
}

/// The family of `address`.
pub fn family_of(address: IpAddr) -> Family {
    if address.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// `IPv4` or `IPv6`, as Kubernetes spells the families (`ipFamilies`).
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// Serde for a probe's family, by its Kubernetes name.
mod family_json {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Family;

    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's `with` passes a reference"
    )]
    pub fn serialize<S: Serializer>(family: &Family, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(super::family_name(*family))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Family, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "IPv4" => Ok(Family::V4),
            "IPv6" => Ok(Family::V6),
            other => Err(serde::de::Error::custom(format!(
                "family {other:?} is neither \"IPv4\" nor \"IPv6\""
            ))),
        }
    }
}

/// The comparison key of a probe.
pub type ProbeKey<'a> = (&'a str, &'a str, u16, &'a str, Family);

impl Probe {
    /// (from, to, port, protocol, family).
    pub fn key(&self) -> ProbeKey<'_> {
        (&self.from, &self.to, self.port, &self.protocol, self.family)
    }
}

impl NodeProbe {
    /// (node, to, port, protocol, family).
    pub fn key(&self) -> ProbeKey<'_> {
        (&self.node, &self.to, self.port, &self.protocol, self.family)
    }
}

impl Report {
    /// The `--json` output: exactly one JSON object.
    ///
    /// # Panics
    ///
    /// Never: a report holds only strings, numbers and booleans.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report is plain strings, numbers and bools")
    }

    /// The verdict lines, one JSON object per line, after a heading.
    pub fn verdict_lines(&self) -> String {
        let mut out = format!("verdict log lines: {}\n", self.verdicts.len());
        for line in &self.verdicts {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Upstream-e2e-style truth tables, one per port, protocol and address
    /// family (rows = from, columns = to, `.` connected, `X` blocked, `?`
    /// not probed), with totals.
    pub fn truth_table(&self) -> String {
        let mut out = String::new();
        let mode = if self.via_service {
            ", through ClusterIPs"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "scenario {} ({} node{}{mode})",
            self.scenario,
            self.nodes,
            if self.nodes == 1 { "" } else { "s" }
        );
        render_probes(&mut out, &self.probes, &self.node_probes);
        for (index, step) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "\nafter step {}: {}", index + 1, step.name);
            render_probes(&mut out, &step.probes, &step.node_probes);
        }
        out
    }
}

/// Every truth table of `probes`, the node probes and the totals.
fn render_probes(out: &mut String, probes: &[Probe], node_probes: &[NodeProbe]) {
    // TCP, then UDP, then SCTP (then anything else), each by port, then
    // IPv4 before IPv6.
    let mut groups: BTreeMap<Group<'_>, Vec<&Probe>> = BTreeMap::new();
    for probe in probes {
        let rank = match probe.protocol.as_str() {
            "TCP" => 0,
            "UDP" => 1,
            "SCTP" => 2,
            _ => 3,
        };
        groups
            .entry((rank, probe.protocol.as_str(), probe.port, probe.family))
            .or_default()
            .push(probe);
    }
    for ((_, protocol, port, family), group) in &groups {
        out.push('\n');
        render_group(
            out,
            &format!("{protocol}/{port} {}", family_name(*family)),
            protocol,
            group,
        );
    }
    out.push('\n');
    render_node_probes(out, node_probes);
    let connected = probes.iter().filter(|p| p.connected).count();
    let skipped = probes.iter().filter(|p| p.skipped).count();
    let _ = writeln!(
        out,
        "total: {} probes, {connected} connected, {} blocked, {skipped} skipped",
        probes.len(),
        probes.len() - connected - skipped,
    );
}

/// A truth table's place in the output: protocol rank, protocol, port,
/// family.
type Group<'a> = (u8, &'a str, u16, Family);

// Writing into a String cannot fail: the `let _ = writeln!` below ignore an
// always-Ok result.
fn render_group(out: &mut String, title: &str, protocol: &str, probes: &[&Probe]) {
    if probes.iter().all(|p| p.skipped) {
        let _ = writeln!(
            out,
            "{title}: {} probes skipped (no {protocol} sockets on this kernel)",
            probes.len()
        );
        return;
    }
    let rows: BTreeSet<&str> = probes.iter().map(|p| p.from.as_str()).collect();
    let columns: BTreeSet<&str> = probes.iter().map(|p| p.to.as_str()).collect();
    let cells: BTreeMap<(&str, &str), &Probe> = probes
        .iter()
        .map(|p| ((p.from.as_str(), p.to.as_str()), *p))
        .collect();
    let width = rows
        .iter()
        .chain(&columns)
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1);
    let _ = writeln!(
        out,
        "{title} (rows: from, columns: to; . connected, X blocked, ? not probed)"
    );
    let mut line = format!("{:<width$}", "-");
    for column in &columns {
        let _ = write!(line, " {column:<width$}");
    }
    let _ = writeln!(out, "{}", line.trim_end());
    for row in &rows {
        let mut line = format!("{row:<width$}");
        for column in &columns {
            let mark = match cells.get(&(*row, *column)) {
                Some(p) if p.skipped => "?",
                Some(p) if p.connected => ".",
                Some(_) => "X",
                None => " ",
            };
            let _ = write!(line, " {mark:<width$}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let connected = probes.iter().filter(|p| p.connected).count();
    let skipped = probes.iter().filter(|p| p.skipped).count();
    let _ = writeln!(
        out,
        "{title}: {connected} connected, {} blocked, {skipped} skipped",
        probes.len() - connected - skipped
    );
}

fn render_node_probes(out: &mut String, node_probes: &[NodeProbe]) {
    let probed: Vec<&NodeProbe> = node_probes.iter().filter(|p| !p.skipped).collect();
    let failed: Vec<&&NodeProbe> = probed.iter().filter(|p| !p.connected).collect();
    let _ = writeln!(
        out,
        "node probes: {}/{} connected",
        probed.len() - failed.len(),
        probed.len()
    );
    for probe in failed {
        let _ = writeln!(
            out,
            "  FAILED {} -> {} {}/{} {} (node traffic must always pass)",
            probe.node,
            probe.to,
            probe.protocol,
            probe.port,
            family_name(probe.family)
        );
    }
}

/// A difference between a report and the EXPECTED file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The probe ran with another result.
    Differs {
        /// The probe as it ran.
        actual: Probe,
        /// What EXPECTED says.
        expected_connected: bool,
    },
    /// EXPECTED names a probe the run did not make (e.g. a misspelt pod,
    /// or a family one of the pods lacks).
    Missing {
        /// The expected entry.
        expected: Probe,
    },
    /// The run made a probe EXPECTED does not judge: every probe needs an
    /// expectation, so that a family or pair added to a scenario cannot
    /// pass unjudged.
    Unexpected {
        /// The probe as it ran.
        actual: Probe,
    },
    /// A node could not reach one of its pods.
    NodeProbeFailed {
        /// The failed probe.
        probe: NodeProbe,
    },
}

fn verdict(connected: bool) -> &'static str {
    if connected {
        "connected"
    } else {
        "blocked"
    }
}

/// `from -> to PROTOCOL/PORT FAMILY`.
fn describe(from: &str, to: &str, protocol: &str, port: u16, family: Family) -> String {
    format!("{from} -> {to} {protocol}/{port} {}", family_name(family))
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Differs {
                actual,
                expected_connected,
            } => write!(
                f,
                "{}: expected {}, got {}",
                describe(
                    &actual.from,
                    &actual.to,
                    &actual.protocol,
                    actual.port,
                    actual.family
                ),
                verdict(*expected_connected),
                verdict(actual.connected)
            ),
            Self::Missing { expected } => write!(
                f,
                "{}: expected {}, but the run has no such probe",
                describe(
                    &expected.from,
                    &expected.to,
                    &expected.protocol,
                    expected.port,
                    expected.family
                ),
                verdict(expected.connected)
            ),
            Self::Unexpected { actual } => write!(
                f,
                "{}: {}, but EXPECTED has no entry for it",
                describe(
                    &actual.from,
                    &actual.to,
                    &actual.protocol,
                    actual.port,
                    actual.family
                ),
                verdict(actual.connected)
            ),
            Self::NodeProbeFailed { probe } => write!(
                f,
                "{}: node to local pod blocked (must always connect)",
                describe(
                    &probe.node,
                    &probe.to,
                    &probe.protocol,
                    probe.port,
                    probe.family
                )
            ),
        }
    }
}

/// The EXPECTED file: `{"probes": [...]}`; other keys are ignored.
#[derive(Deserialize)]
struct Expected {
    probes: Vec<Probe>,
}

/// Compares `report` with the EXPECTED JSON, keyed by from, to, port,
/// protocol and family (order-insensitive; protocol case-insensitive; an
/// entry without `family` is IPv4). Every probe the run made must be
/// listed, skipped ones (SCTP) excepted, and every listed one must have
/// run; a skipped probe's result is not judged; every failed node probe is
/// a mismatch. Mismatches come sorted by key, node probes last.
pub fn compare(report: &Report, expected_json: &str) -> Result<Vec<Mismatch>, LabError> {
    let expected: Expected =
        serde_json::from_str(expected_json).map_err(|e| LabError::Expected {
            reason: e.to_string(),
        })?;
    let actual: BTreeMap<ProbeKey<'_>, &Probe> =
        report.probes.iter().map(|p| (p.key(), p)).collect();
    let mut expected_probes = expected.probes;
    for probe in &mut expected_probes {
        probe.protocol = probe.protocol.to_ascii_uppercase();
    }
    let mut seen = BTreeSet::new();
    let mut mismatches = Vec::new();
    for want in &expected_probes {
        if !seen.insert(want.key()) {
            return Err(LabError::Expected {
                reason: format!(
                    "{} is listed twice",
                    describe(&want.from, &want.to, &want.protocol, want.port, want.family)
                ),
            });
        }
        match actual.get(&want.key()) {
            None => mismatches.push(Mismatch::Missing {
                expected: want.clone(),
            }),
            Some(got) if got.skipped || want.skipped => {}
            Some(got) if got.connected != want.connected => mismatches.push(Mismatch::Differs {
                actual: (*got).clone(),
                expected_connected: want.connected,
            }),
            Some(_) => {}
        }
    }
    mismatches.extend(
        report
            .probes
            .iter()
            .filter(|p| !p.skipped && !seen.contains(&p.key()))
            .map(|p| Mismatch::Unexpected { actual: p.clone() }),
    );
    mismatches.sort_by(|a, b| mismatch_key(a).cmp(&mismatch_key(b)));
    mismatches.extend(
        report
            .node_probes
            .iter()
            .filter(|p| !p.skipped && !p.connected)
            .map(|p| Mismatch::NodeProbeFailed { probe: p.clone() }),
    );
    Ok(mismatches)
}

fn mismatch_key(mismatch: &Mismatch) -> ProbeKey<'_> {
    match mismatch {
        Mismatch::Differs { actual, .. } | Mismatch::Unexpected { actual } => actual.key(),
        Mismatch::Missing { expected } => expected.key(),
        Mismatch::NodeProbeFailed { probe } => probe.key(),
    }
}
