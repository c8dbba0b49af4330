//! Measurement 4: the latency of new TCP connections between two pods on
//! different nodes of the lab ([`crate::lab`]), through routers holding (a)
//! no table, (b) only conntrack (`ct state established,related accept` in
//! a table of its own: what any stateful enforcer costs), (c) nftpol's
//! ruleset committed through netlink (re-judging and the verdict log off:
//! [`crate::features`] measures those), (d) the same allow-list as linear
//! rules ([`crate::linear`]) loaded with `nft -f`; one cluster size per run.
//!
//! Every setup is measured in each of several interleaved rounds
//! ([`crate::rounds`]), each round a sample of sequential connects from
//! source ports that do not repeat ([`crate::probe`]), taken in short
//! blocks alternating with as many in a second lab that holds
//! conntrack-only all along. The headline is each setup's connect latency
//! p50 and p99 over that reference's of the same moments (median over
//! rounds, with the range): the machine's speed changes from round to
//! round by more than the costs measured, and the paired ratio does not
//! move with it. Absolute latencies are reported too; the rate is over the
//! time spent connecting. Bulk
//! throughput is measured for (a), (b), and (c) and (d) at the largest
//! policy count. A connect to a port no policy allows proves enforcement is
//! on: it is refused without a table and dropped with one.

use anyhow::{anyhow, bail, Result};
use nftpol_ir::Ruleset;
use nftpol_ruleset::compile::CompileOptions;
use serde::{Deserialize, Serialize};

use crate::lab::{self, Lab, Tables};
use crate::linear::render_linear;
use crate::machine::{load_average, Load};
use crate::rounds::{self, Labs, Point, Schedule, Setup, Trial};

/// Most linear rules loaded with `nft -f` (larger texts take minutes and
/// gigabytes in nft 1.0.6; the point is then reported as not measured).
const LINEAR_RULE_LIMIT: usize = 400_000;

/// What measurement 4 found at one pod count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataplaneResult {
    /// Generated pods.
    pub pods: usize,
    /// Rounds and traffic per round.
    pub schedule: Schedule,
    /// Every setup measured, in the order of the first round.
    pub points: Vec<Point>,
    /// Setups that could not be measured, and why.
    pub notes: Vec<String>,
    /// The machine's load around the measurement.
    #[serde(default)]
    pub load: Load,
    /// The CPU the measuring threads were pinned to (none: a run from
    /// before they were pinned).
    #[serde(default)]
    pub cpu: Option<usize>,
}

impl DataplaneResult {
    /// The conntrack-only point.
    pub fn conntrack_only(&self) -> Option<&Point> {
        self.points
            .iter()
            .find(|point| point.setup == Setup::ConntrackOnly)
    }

    /// The points of `setup`, by policy count.
    pub fn of(&self, setup: Setup) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(move |point| point.setup == setup)
    }
}

/// Set elements on node-1 plus node-2.
fn elements(rulesets: &[Ruleset; 2]) -> usize {
    rulesets.iter().map(Ruleset::element_count).sum()
}

/// The nftpol and linear trials at one policy count (the linear one is
/// left out, with a note, past [`LINEAR_RULE_LIMIT`]).
fn trials_at(
    lab: &Lab,
    pods: usize,
    policies: usize,
    seed: u64,
    throughput: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Trial>> {
    eprintln!("nftpol-bench: compiling {pods} pods × {policies} policies …");
    let cluster = lab::cluster(pods, policies, seed, lab);
    let compiled = lab::rulesets_with(&cluster, CompileOptions::default());
    drop(cluster);
    let rulesets = compiled.clone().map(|compiled| compiled.ruleset);
    let elements = elements(&rulesets);
    let nftpol = Tables::Nftpol(Box::new(rulesets));
    let rules = nftpol.rules(0);
    let mut trials = vec![Trial::new(
        Setup::NFTPOL,
        policies,
        nftpol,
        (rules, elements),
        throughput,
    )];
    let (texts, linear_rules): (Vec<String>, Vec<usize>) =
        compiled.iter().map(render_linear).unzip();
    let linear_rules: usize = linear_rules.iter().sum();
    if linear_rules > LINEAR_RULE_LIMIT {
        notes.push(format!(
            "linear rules at {policies} policies not loaded: {linear_rules} rules exceed {LINEAR_RULE_LIMIT}"
        ));
        return Ok(trials);
    }
    let texts: [String; 2] = texts
        .try_into()
        .map_err(|_| anyhow!("two nodes, two texts"))?;
    trials.push(Trial::new(
        Setup::Linear,
        policies,
        Tables::Text(Box::new(texts)),
        (linear_rules, elements),
        throughput,
    ));
    Ok(trials)
}

/// Runs measurement 4 at `pods` generated pods and each of `policy_counts`.
pub fn run(
    pods: usize,
    policy_counts: &[usize],
    schedule: Schedule,
    seed: u64,
) -> Result<DataplaneResult> {
    let start = load_average();
    let rt = lab::runtime()?;
    let lab = lab::build(&rt)?;
    let reference = lab::build_reference(&rt)?;
    let cpu = lab.cpu;
    let mut notes = Vec::new();
    let mut trials = vec![
        Trial::new(Setup::NoTable, 0, Tables::None, (0, 0), true),
        Trial::new(
            Setup::ConntrackOnly,
            0,
            Tables::ConntrackOnly,
            (Tables::ConntrackOnly.rules(0), 0),
            true,
        ),
    ];
    let largest = policy_counts.iter().copied().max().unwrap_or(0);
    for &policies in policy_counts {
        trials.extend(trials_at(
            &lab,
            pods,
            policies,
            seed,
            policies == largest,
            &mut notes,
        )?);
    }
    let labs = Labs {
        measured: &lab,
        reference: &reference,
    };
    let (points, round_notes) = rounds::run(labs, &mut trials, &schedule);
    notes.extend(round_notes);
    drop(trials);
    for lab in [lab, reference] {
        lab.topology
            .teardown()
            .map_err(|e| anyhow!("removing the lab: {e}"))?;
    }
    let result = DataplaneResult {
        pods,
        schedule,
        points,
        notes,
        load: Load {
            start,
            end: load_average(),
        },
        cpu: Some(cpu),
    };
    let baseline = result.of(Setup::NoTable).next();
    if !baseline.is_some_and(|point| point.denied_port == "refused" && point.connections > 0) {
        bail!("the lab does not connect without a table: {baseline:?}");
    }
    Ok(result)
}
