//! Setups measured in interleaved rounds, shared by the dataplane
//! ([`crate::dataplane`]) and feature-cost ([`crate::features`])
//! measurements.
//!
//! One round loads every setup in turn into the lab's routers, takes one
//! sample of new connections (and, where asked, one bulk transfer), and
//! removes it again; rounds alternate their order ([`round_order`]). A
//! setup's figures are the median over the rounds, with the range, so a
//! stall in one round shows as spread instead of moving the result, and
//! drift over the run weighs on every setup alike. Every sample is paired
//! with a reference lab ([`Labs`], [`probe::paired_connections`]): a
//! setup's latency over the reference's at the same moments does not move
//! with the machine's speed, which changes by more than the costs measured.

use std::fmt;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::lab::{Lab, Tables};
use crate::measure::{round_order, Spread, Summary};
use crate::probe::{self, Ports, Sample};

/// Longest one sample of new connections may take, s (a bound, never hit
/// on a working lab: a sample is a few thousand connects of ~0.1 ms).
const SAMPLE_BOUND_S: f64 = 20.0;

/// What the lab's two routers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setup {
    /// No table at all: no filtering, no conntrack.
    NoTable,
    /// A table of its own with only `ct state established,related accept`.
    ConntrackOnly,
    /// nftpol's ruleset, compiled with the given agent flags.
    Nftpol {
        /// `--rejudge-established`.
        rejudge: bool,
        /// `--verdict-log=deny` (else `off`).
        verdict_log_deny: bool,
    },
    /// nftpol's allow-list as linear rules, loaded with `nft -f`.
    Linear,
    /// nftpol's ruleset with Admin ClusterNetworkPolicies selecting both
    /// bench pods that the bench connection is tested against and never
    /// matches ([`crate::cluster_policies::admin_guards`]).
    NftpolAdminGuards,
}

impl Setup {
    /// nftpol with both features off.
    pub const NFTPOL: Self = Self::Nftpol {
        rejudge: false,
        verdict_log_deny: false,
    };
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTable => f.write_str("no table"),
            Self::ConntrackOnly => f.write_str("conntrack only"),
            Self::Nftpol {
                rejudge,
                verdict_log_deny,
            } => {
                f.write_str("nftpol")?;
                match (rejudge, verdict_log_deny) {
                    (false, false) => f.write_str(", re-judging off, verdict log off"),
                    (true, false) => f.write_str(", re-judging on"),
                    (false, true) => f.write_str(", verdict log deny"),
                    (true, true) => f.write_str(", re-judging on + verdict log deny"),
                }
            }
            Self::Linear => f.write_str("linear rules"),
            Self::NftpolAdminGuards => f.write_str("nftpol + Admin ClusterNetworkPolicies"),
        }
    }
}

/// One setup to measure, and what its rounds found so far.
pub(crate) struct Trial {
    /// The setup.
    pub(crate) setup: Setup,
    /// Policies of the generated cluster.
    pub(crate) policies: usize,
    /// Rules on node-1 plus node-2.
    pub(crate) rules: usize,
    /// Set elements on node-1 plus node-2.
    pub(crate) elements: usize,
    /// What it loads.
    pub(crate) tables: Tables,
    /// Whether each round also measures bulk throughput.
    pub(crate) throughput: bool,
    loads: Vec<f64>,
    samples: Vec<Sample>,
    gbit: Vec<f64>,
    denied: Option<String>,
    failed: bool,
}

impl Trial {
    /// A setup not measured yet.
    pub(crate) fn new(
        setup: Setup,
        policies: usize,
        tables: Tables,
        (rules, elements): (usize, usize),
        throughput: bool,
    ) -> Self {
        Self {
            setup,
            policies,
            rules,
            elements,
            tables,
            throughput,
            loads: Vec::new(),
            samples: Vec::new(),
            gbit: Vec::new(),
            denied: None,
            failed: false,
        }
    }

    fn round(
        &mut self,
        labs: Labs<'_>,
        ports: &mut Ports,
        schedule: &Schedule,
        first: bool,
    ) -> anyhow::Result<()> {
        let lab = labs.measured;
        self.loads.push(self.tables.load(lab)?);
        self.samples.push(probe::paired_connections(
            lab,
            labs.reference,
            ports,
            schedule.connections,
            SAMPLE_BOUND_S,
        )?);
        if self.throughput {
            self.gbit
                .push(probe::throughput(lab, ports, schedule.seconds)?);
        }
        if first {
            self.denied = Some(probe::denied_port(lab, ports)?);
        }
        self.tables.unload(lab)
    }

    fn point(&self) -> Point {
        let spread = |figure: fn(&Sample) -> f64| {
            Spread::of(&self.samples.iter().map(figure).collect::<Vec<_>>())
        };
        let paired = |figure: fn(&Summary) -> f64| {
            let ratios: Option<Vec<f64>> = self
                .samples
                .iter()
                .map(|s| {
                    let reference = figure(s.reference.as_ref()?);
                    (reference > 0.0).then(|| figure(&s.connect) / reference)
                })
                .collect();
            ratios.filter(|r| !r.is_empty()).map(|r| Spread::of(&r))
        };
        let connections: usize = self.samples.iter().map(|s| s.connect.n).sum();
        let softirq_ms: f64 = self.samples.iter().map(|s| s.softirq_ms).sum();
        #[expect(
            clippy::cast_precision_loss,
            reason = "connection counts far below 2^52"
        )]
        let softirq_us_per_connection = if connections > 0 {
            softirq_ms * 1000.0 / connections as f64
        } else {
            0.0
        };
        Point {
            setup: self.setup,
            policies: self.policies,
            rules: self.rules,
            elements: self.elements,
            load_ms: Spread::of(&self.loads),
            p50_ms: spread(|s| s.connect.p50),
            p99_ms: spread(|s| s.connect.p99),
            paired_p50: paired(|s| s.p50),
            paired_p99: paired(|s| s.p99),
            // A rate is the inverse of the mean latency: the reference's
            // mean over the sample's is the rate's ratio.
            paired_rate: paired(|s| if s.mean > 0.0 { 1.0 / s.mean } else { 0.0 }),
            per_s: spread(|s| s.per_s),
            cpu_us: spread(|s| s.connect_cpu_us.p50),
            connections,
            failures: self.samples.iter().map(|s| s.failures).sum(),
            softirq_us_per_connection,
            gbit_per_s: self.throughput.then(|| Spread::of(&self.gbit)),
            denied_port: self.denied.clone().unwrap_or_default(),
            samples: self.samples.clone(),
        }
    }
}

/// How many rounds, and how much traffic per round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Rounds over every setup.
    pub rounds: usize,
    /// New connections per setup and round.
    pub connections: usize,
    /// Seconds of bulk transfer per setup and round (where measured).
    pub seconds: f64,
}

/// One setup over every round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The setup.
    pub setup: Setup,
    /// Policies of the generated cluster.
    pub policies: usize,
    /// Rules on node-1 plus node-2.
    pub rules: usize,
    /// Set elements on node-1 plus node-2.
    pub elements: usize,
    /// Loading both nodes' tables, ms.
    pub load_ms: Spread,
    /// Connect latency p50 of each round, ms: median and range.
    pub p50_ms: Spread,
    /// Connect latency p99 of each round, ms: median and range.
    pub p99_ms: Spread,
    /// Each round's p50 over the reference lab's p50 taken alongside
    /// ([`probe::paired_connections`]): median and range; none in results
    /// measured before the samples were paired.
    #[serde(default)]
    pub paired_p50: Option<Spread>,
    /// The same for p99.
    #[serde(default)]
    pub paired_p99: Option<Spread>,
    /// The same for the connection rate (connections per second spent
    /// connecting).
    #[serde(default)]
    pub paired_rate: Option<Spread>,
    /// Connections per second of time spent connecting, per round.
    pub per_s: Spread,
    /// The client thread's CPU time per `connect()`, median of each round, µs.
    pub cpu_us: Spread,
    /// Completed connections over all rounds.
    pub connections: usize,
    /// Failed connects over all rounds.
    pub failures: usize,
    /// The machine's softirq CPU per completed connection over all rounds, µs.
    pub softirq_us_per_connection: f64,
    /// Bulk throughput of one established flow per round, Gbit/s.
    pub gbit_per_s: Option<Spread>,
    /// What a connect to a port no policy allows did in the first round:
    /// `refused` (no filtering), `dropped` (enforced).
    pub denied_port: String,
    /// Every round's sample, in round order.
    pub samples: Vec<Sample>,
}

/// The lab the setups are loaded into, and the lab holding the reference
/// setup all along, which every sample is paired with.
#[derive(Clone, Copy)]
pub(crate) struct Labs<'a> {
    /// Where each trial's tables are loaded.
    pub(crate) measured: &'a Lab,
    /// Where the reference setup stays loaded.
    pub(crate) reference: &'a Lab,
}

/// Measures `trials` over `schedule.rounds` interleaved rounds. A setup
/// that fails is reported in the notes and left out of later rounds and of
/// the points.
pub(crate) fn run(
    labs: Labs<'_>,
    trials: &mut [Trial],
    schedule: &Schedule,
) -> (Vec<Point>, Vec<String>) {
    let lab = labs.measured;
    let mut ports = Ports::default();
    let mut notes = Vec::new();
    for round in 0..schedule.rounds {
        eprintln!(
            "nftpol-bench: round {} of {} over {} setups …",
            round + 1,
            schedule.rounds,
            trials.len()
        );
        for index in round_order(trials.len(), round) {
            let trial = &mut trials[index];
            if trial.failed {
                continue;
            }
            if let Err(error) = trial.round(labs, &mut ports, schedule, round == 0) {
                let what = format!(
                    "{} at {} policies, round {}: {error:#}",
                    trial.setup,
                    trial.policies,
                    round + 1
                );
                eprintln!("nftpol-bench: {what}");
                notes.push(what);
                trial.failed = true;
                // Leaves the routers clean for the next setup; the table
                // may be absent, which is what unloading is for.
                let _ = trial.tables.unload(lab);
            }
        }
    }
    let points = trials
        .iter()
        .filter(|trial| !trial.failed)
        .map(Trial::point)
        .collect();
    (points, notes)
}

/// [`run`] over setups that each enforce nftpol's ruleset, paired with
/// `reference` ([`crate::lab::build_reference`]), then both labs removed:
/// fails unless every measured setup dropped the port no policy allows
/// (else it measured a ruleset that does not enforce).
pub(crate) fn run_enforcing(
    lab: Lab,
    reference: Lab,
    mut trials: Vec<Trial>,
    schedule: &Schedule,
) -> Result<(Vec<Point>, Vec<String>)> {
    let labs = Labs {
        measured: &lab,
        reference: &reference,
    };
    let (points, notes) = run(labs, &mut trials, schedule);
    drop(trials);
    for lab in [lab, reference] {
        lab.topology
            .teardown()
            .map_err(|e| anyhow!("removing the lab: {e}"))?;
    }
    if let Some(open) = points.iter().find(|point| point.denied_port != "dropped") {
        bail!(
            "{}: a port no policy allows was not dropped ({}), so the ruleset does not enforce",
            open.setup,
            open.denied_port
        );
    }
    Ok((points, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(p50_ms: f64, reference_p50_ms: Option<f64>) -> Sample {
        Sample {
            connect: Summary::of(&[p50_ms]),
            connect_cpu_us: Summary::default(),
            per_s: 0.0,
            failures: 0,
            softirq_ms: 0.0,
            wall_ms: 0.0,
            reference: reference_p50_ms.map(|ms| Summary::of(&[ms])),
        }
    }

    fn trial(samples: Vec<Sample>) -> Trial {
        let mut trial = Trial::new(Setup::NFTPOL, 0, Tables::None, (0, 0), false);
        trial.samples = samples;
        trial
    }

    #[test]
    fn a_point_takes_each_rounds_ratio_to_the_reference_taken_with_it() {
        // A fast round and a slow one: the same 10 % over the reference.
        let point = trial(vec![
            sample(0.011, Some(0.010)),
            sample(0.0165, Some(0.015)),
            sample(0.0121, Some(0.011)),
        ])
        .point();
        let paired = point.paired_p50.unwrap();
        assert!((paired.median - 1.1).abs() < 1e-9, "{paired:?}");
        assert!((paired.max - paired.min).abs() < 1e-9, "{paired:?}");
        assert!((point.p50_ms.median - 0.0121).abs() < 1e-12);
    }
}
