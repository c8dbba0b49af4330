//! The driver: runs every measurement in its own process (so each peak RSS
//! is its own and a size that takes too long can be stopped), collects the
//! results and writes `results.json`.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::churn::ChurnResult;
use crate::cluster_policies::{ClusterPolicyResult, ClusterPolicyShape};
use crate::commit::CommitResult;
use crate::compile::CompileResult;
use crate::dataplane::DataplaneResult;
use crate::features::FeaturesResult;
use crate::machine::{describe, Machine};
use crate::memory::MemoryResult;
use crate::objects::{Counts, ObjectsResult};
use crate::policy_churn::PolicyChurnResult;
use crate::rejudge::RejudgeResult;
use crate::rounds::Schedule;

/// One measurement of a run (`--only` picks some).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Measurement {
    /// 1: model, compile, diff.
    Compile,
    /// 2: full commit against `nft -f`.
    Commit,
    /// 3: one-pod churn.
    Churn,
    /// 4: new connections through the lab's routers.
    Dataplane,
    /// 5: agent memory.
    Memory,
    /// 6: re-judging established flows after one commit.
    Rejudge,
    /// 7: feature costs.
    Features,
    /// 8: ClusterNetworkPolicy costs.
    ClusterPolicies,
    /// 9: kernel commit cost per object kind.
    Objects,
    /// 10: one policy added or deleted, event to ack.
    PolicyChurn,
}

impl Measurement {
    /// Every measurement, in report order.
    pub const ALL: &[Self] = &[
        Self::Compile,
        Self::Commit,
        Self::Churn,
        Self::Dataplane,
        Self::Memory,
        Self::Rejudge,
        Self::Features,
        Self::ClusterPolicies,
        Self::Objects,
        Self::PolicyChurn,
    ];

    /// The subcommand that runs it (and starts the name of its skips).
    pub fn subcommand(self) -> &'static str {
        match self {
            Self::Compile => "compile",
            Self::Commit => "commit",
            Self::Churn => "churn",
            Self::Dataplane => "dataplane",
            Self::Memory => "memory",
            Self::Rejudge => "rejudge",
            Self::Features => "features",
            Self::ClusterPolicies => "cluster-policies",
            Self::Objects => "objects",
            Self::PolicyChurn => "policy-churn",
        }
    }
}

/// Measurement 4 as an earlier run found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousDataplane {
    /// Commit measured.
    pub commit: String,
    /// When (UTC).
    pub date: String,
    /// One per pod count.
    pub results: Vec<DataplaneResult>,
}

/// Measurements rerun into an earlier run's results (`all --only`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rerun {
    /// Which.
    pub measurements: Vec<Measurement>,
    /// Commit measured.
    pub commit: String,
    /// When (UTC).
    pub date: String,
}

/// A measurement that did not produce a result, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Which measurement and size.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// `smoke` or `full`.
    pub mode: String,
    /// Seed of every generated cluster.
    pub seed: u64,
    /// Measurement 1.
    pub compile: Vec<CompileResult>,
    /// Measurement 2.
    pub commit: Vec<CommitResult>,
    /// Measurement 3.
    pub churn: Vec<ChurnResult>,
    /// Measurement 4, one per pod count.
    #[serde(deserialize_with = "dataplane_results")]
    pub dataplane: Vec<DataplaneResult>,
    /// Measurement 4 of the run that a rerun (`--only dataplane`)
    /// replaced, to show how well the figures repeat.
    #[serde(default)]
    pub dataplane_previous: Option<PreviousDataplane>,
    /// Measurement 5.
    pub memory: Vec<MemoryResult>,
    /// Measurement 6.
    pub rejudge: Option<RejudgeResult>,
    /// Measurement 7.
    #[serde(default)]
    pub features: Option<FeaturesResult>,
    /// Measurement 8.
    #[serde(default)]
    pub cluster_policies: Option<ClusterPolicyResult>,
    /// Measurement 9.
    #[serde(default)]
    pub objects: Option<ObjectsResult>,
    /// Measurement 10.
    #[serde(default)]
    pub policy_churn: Vec<PolicyChurnResult>,
    /// What did not finish.
    pub skipped: Vec<Skipped>,
    /// Measurements rerun later into these results, oldest first.
    #[serde(default)]
    pub reruns: Vec<Rerun>,
}

/// Measurement 4 as written since #11, one result per pod count. The
/// single result written before (its rate over wall time, with 4-tuples
/// reused) reads as none, so `--only dataplane` can replace it.
fn dataplane_results<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<DataplaneResult>, D::Error> {
    use serde::de::Error as _;
    let value = serde_json::Value::deserialize(deserializer)?;
    if value.is_array() {
        serde_json::from_value(value).map_err(D::Error::custom)
    } else {
        Ok(Vec::new())
    }
}

/// Sizes and limits of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `smoke` or `full`.
    pub mode: &'static str,
    /// Pod counts of measurement 1.
    pub compile_pods: Vec<usize>,
    /// Policy counts of measurement 1.
    pub compile_policies: Vec<usize>,
    /// (pods, policies) of measurement 2, and runs per tool.
    pub commit: Vec<(usize, usize)>,
    /// Runs per tool in measurement 2.
    pub commit_runs: usize,
    /// (pods, policies, reconciler events, reconciler budget s, kernel events).
    pub churn: Vec<(usize, usize, usize, f64, usize)>,
    /// Measurement 4: pods and policy counts, one lab each.
    pub dataplane: Vec<(usize, Vec<usize>)>,
    /// Rounds and traffic of measurement 4.
    pub dataplane_schedule: Schedule,
    /// (pods, policies) of measurement 5.
    pub memory: Vec<(usize, usize)>,
    /// Measurement 6: established flow counts.
    pub rejudge: Vec<usize>,
    /// Measurement 7: pods, policies, rounds and traffic.
    pub features: (usize, usize, Schedule),
    /// Measurement 8: pods, NetworkPolicies, the CNPs, commit runs, rounds
    /// and traffic.
    pub cluster_policies: (usize, usize, ClusterPolicyShape, usize, Schedule),
    /// Measurement 9: object counts and runs.
    pub objects: Counts,
    /// Measurement 10: (pods, policies, events, budget s).
    pub policy_churn: Vec<(usize, usize, usize, f64)>,
    /// Longest one measurement process may run.
    pub timeout: Duration,
    /// Compile sizes with more than this many pods × policies run last,
    /// after every other measurement, with [`Plan::big_timeout`].
    pub big: usize,
    /// Longest one of those may run.
    pub big_timeout: Duration,
}

impl Plan {
    /// Seconds-long sizes that keep the code working (CI).
    pub fn smoke() -> Self {
        Self {
            mode: "smoke",
            compile_pods: vec![500, 1000],
            compile_policies: vec![50, 100],
            commit: vec![(1000, 100)],
            commit_runs: 1,
            churn: vec![(1000, 100, 15, 5.0, 15)],
            dataplane: vec![(1000, vec![0, 50])],
            dataplane_schedule: Schedule {
                rounds: 2,
                connections: 100,
                seconds: 0.2,
            },
            memory: vec![(1000, 100)],
            rejudge: vec![1000],
            features: (
                1000,
                50,
                Schedule {
                    rounds: 2,
                    connections: 100,
                    seconds: 0.2,
                },
            ),
            cluster_policies: (
                1000,
                100,
                ClusterPolicyShape {
                    cluster_policies: 10,
                    rules: 10,
                    guards: 10,
                },
                1,
                Schedule {
                    rounds: 2,
                    connections: 100,
                    seconds: 0.2,
                },
            ),
            objects: Counts {
                objects: vec![50, 200],
                elements: vec![500, 2000],
                runs: 1,
            },
            policy_churn: vec![(1000, 100, 4, 5.0)],
            timeout: Duration::from_mins(2),
            big: usize::MAX,
            big_timeout: Duration::from_mins(2),
        }
    }

    /// The sizes of issue #6 that finish on 2 cores in about 20 minutes.
    /// Measurements 1, 2, 5 and 10 reach the target's 100k pods × 10k
    /// policies (its `nft -f` alone takes seconds); churn stops at 100k
    /// pods × 1k policies.
    pub fn full() -> Self {
        Self {
            mode: "full",
            compile_pods: vec![1000, 10_000, 100_000],
            compile_policies: vec![100, 1000, 10_000],
            commit: vec![
                (1000, 100),
                (10_000, 1000),
                (100_000, 100),
                (100_000, 1000),
                (10_000, 10_000),
                (100_000, 10_000),
            ],
            commit_runs: 3,
            churn: vec![
                (1000, 100, 1002, 60.0, 1002),
                (100_000, 100, 1002, 40.0, 3000),
                (100_000, 1000, 1002, 40.0, 3000),
            ],
            dataplane: vec![
                (1000, vec![0, 100, 1000, 10_000]),
                (10_000, vec![0, 100, 1000, 10_000]),
                (100_000, vec![0, 100, 1000]),
            ],
            // Many short rounds rather than a few long ones: on a shared
            // machine the noise comes in bursts of seconds, which the
            // median over rounds then leaves out.
            dataplane_schedule: Schedule {
                rounds: 7,
                connections: 1000,
                seconds: 2.0,
            },
            memory: vec![(10_000, 1000), (100_000, 1000), (100_000, 10_000)],
            rejudge: vec![10_000, 100_000],
            features: (
                10_000,
                100,
                Schedule {
                    rounds: 9,
                    connections: 1000,
                    seconds: 2.0,
                },
            ),
            // Issue #12: 100 CNPs × 10 rules over 1,000 NetworkPolicies at
            // 10,000 pods; a pod selected by 10 Admin CNPs.
            cluster_policies: (
                10_000,
                1000,
                ClusterPolicyShape {
                    cluster_policies: 100,
                    rules: 10,
                    guards: 10,
                },
                3,
                Schedule {
                    rounds: 9,
                    connections: 1000,
                    seconds: 2.0,
                },
            ),
            // 10,000 policies compile to 18k chains, 44k rules and 45k
            // elements: the counts bracket that.
            objects: Counts {
                objects: vec![2000, 8000],
                elements: vec![20_000, 80_000],
                runs: 3,
            },
            policy_churn: vec![
                (10_000, 1_000, 20, 30.0),
                (10_000, 3_000, 20, 40.0),
                (10_000, 10_000, 20, 60.0),
                (100_000, 10_000, 20, 90.0),
            ],
            timeout: Duration::from_mins(10),
            big: 100_000 * 1000,
            big_timeout: Duration::from_mins(6),
        }
    }
}

/// Stops a measurement: SIGTERM first, so a lab tears its namespaces
/// down, then SIGKILL after five seconds.
fn stop(process: &mut std::process::Child) -> Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(process.id()).context("a pid")?);
    // The process may have exited meanwhile; waiting below tells.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(5) {
        if process.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    process.kill().context("stopping a measurement")?;
    process.wait()?;
    Ok(())
}

/// Runs this executable with `args`; its stdout is one JSON value.
fn child<T: DeserializeOwned>(args: &[String], timeout: Duration) -> Result<T> {
    let exe = std::env::current_exe().context("locating nftpol-bench")?;
    let mut process = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a measurement")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = process.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            stop(&mut process)?;
            bail!("did not finish within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    process
        .stdout
        .take()
        .context("the measurement's stdout")?
        .read_to_string(&mut stdout)?;
    if !status.success() {
        bail!("exited with {status}");
    }
    serde_json::from_str(stdout.trim()).context("reading the measurement's JSON")
}

fn size_args(command: &str, pods: usize, policies: usize, seed: u64) -> Vec<String> {
    vec![
        command.to_owned(),
        "--pods".to_owned(),
        pods.to_string(),
        "--policies".to_owned(),
        policies.to_string(),
        "--seed".to_owned(),
        seed.to_string(),
    ]
}

fn collect<T: DeserializeOwned>(
    what: String,
    args: &[String],
    timeout: Duration,
    into: &mut Vec<T>,
    skipped: &mut Vec<Skipped>,
) {
    eprintln!("nftpol-bench: {what} …");
    let started = Instant::now();
    match child(args, timeout) {
        Ok(value) => {
            into.push(value);
            eprintln!(
                "nftpol-bench: {what} done in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Err(error) => {
            eprintln!("nftpol-bench: {what} skipped: {error:#}");
            skipped.push(Skipped {
                what,
                reason: format!("{error:#}"),
            });
        }
    }
}

/// Runs the measurements of `plan` in `only` and returns the results.
pub fn run(plan: &Plan, seed: u64, only: &[Measurement]) -> Results {
    let mut results = Results {
        machine: describe(),
        mode: plan.mode.to_owned(),
        seed,
        compile: Vec::new(),
        commit: Vec::new(),
        churn: Vec::new(),
        dataplane: Vec::new(),
        dataplane_previous: None,
        memory: Vec::new(),
        rejudge: None,
        features: None,
        cluster_policies: None,
        objects: None,
        policy_churn: Vec::new(),
        skipped: Vec::new(),
        reruns: Vec::new(),
    };
    let big = if only.contains(&Measurement::Compile) {
        compile(plan, seed, &mut results)
    } else {
        Vec::new()
    };
    if only.contains(&Measurement::Commit) {
        for &(pods, policies) in &plan.commit {
            let mut args = size_args("commit", pods, policies, seed);
            args.extend(["--runs".to_owned(), plan.commit_runs.to_string()]);
            collect(
                format!("commit {pods} pods × {policies} policies"),
                &args,
                plan.timeout,
                &mut results.commit,
                &mut results.skipped,
            );
        }
    }
    if only.contains(&Measurement::Churn) {
        churn(plan, seed, &mut results);
    }
    if only.contains(&Measurement::Dataplane) {
        dataplane(plan, seed, &mut results);
    }
    if only.contains(&Measurement::Memory) {
        for &(pods, policies) in &plan.memory {
            collect(
                format!("memory {pods} pods × {policies} policies"),
                &size_args("memory", pods, policies, seed),
                plan.timeout,
                &mut results.memory,
                &mut results.skipped,
            );
        }
    }
    if only.contains(&Measurement::Rejudge) {
        let mut args = vec!["rejudge".to_owned()];
        for count in &plan.rejudge {
            args.extend(["--flows".to_owned(), count.to_string()]);
        }
        results.rejudge = one(
            "rejudge: established flows".to_owned(),
            &args,
            plan.timeout,
            &mut results.skipped,
        );
    }
    if only.contains(&Measurement::Features) {
        let (pods, policies, schedule) = &plan.features;
        let mut args = size_args("features", *pods, *policies, seed);
        args.extend(schedule_args(schedule));
        results.features = one(
            format!("features {pods} pods × {policies} policies"),
            &args,
            plan.timeout,
            &mut results.skipped,
        );
    }
    if only.contains(&Measurement::ClusterPolicies) {
        cluster_policies(plan, seed, &mut results);
    }
    if only.contains(&Measurement::Objects) {
        results.objects = one(
            "objects: kernel commit cost per object".to_owned(),
            &objects_args(&plan.objects),
            plan.timeout,
            &mut results.skipped,
        );
    }
    if only.contains(&Measurement::PolicyChurn) {
        policy_churn(plan, seed, &mut results);
    }
    for (pods, policies) in big {
        collect(
            format!("compile {pods} pods × {policies} policies"),
            &size_args("compile", pods, policies, seed),
            plan.big_timeout,
            &mut results.compile,
            &mut results.skipped,
        );
    }
    results
}

/// Measurement 1 up to [`Plan::big`]; returns the sizes past it.
fn compile(plan: &Plan, seed: u64, results: &mut Results) -> Vec<(usize, usize)> {
    let mut big = Vec::new();
    for &policies in &plan.compile_policies {
        for &pods in &plan.compile_pods {
            if pods.saturating_mul(policies) > plan.big {
                big.push((pods, policies));
                continue;
            }
            collect(
                format!("compile {pods} pods × {policies} policies"),
                &size_args("compile", pods, policies, seed),
                plan.timeout,
                &mut results.compile,
                &mut results.skipped,
            );
        }
    }
    big
}

/// Measurement 4, one process per pod count.
fn dataplane(plan: &Plan, seed: u64, results: &mut Results) {
    for (pods, policies) in &plan.dataplane {
        let mut args = vec![
            "dataplane".to_owned(),
            "--pods".to_owned(),
            pods.to_string(),
            "--seed".to_owned(),
            seed.to_string(),
        ];
        args.extend(schedule_args(&plan.dataplane_schedule));
        for count in policies {
            args.extend(["--policies".to_owned(), count.to_string()]);
        }
        collect(
            format!("dataplane {pods} pods"),
            &args,
            plan.timeout,
            &mut results.dataplane,
            &mut results.skipped,
        );
    }
}

/// Measurement 8, one process.
fn cluster_policies(plan: &Plan, seed: u64, results: &mut Results) {
    let (pods, policies, shape, runs, schedule) = &plan.cluster_policies;
    let mut args = size_args("cluster-policies", *pods, *policies, seed);
    args.extend([
        "--cluster-policies".to_owned(),
        shape.cluster_policies.to_string(),
        "--rules".to_owned(),
        shape.rules.to_string(),
        "--guards".to_owned(),
        shape.guards.to_string(),
        "--runs".to_owned(),
        runs.to_string(),
    ]);
    args.extend(schedule_args(schedule));
    results.cluster_policies = one(
        format!("cluster-policies {pods} pods × {policies} policies"),
        &args,
        plan.timeout,
        &mut results.skipped,
    );
}

fn churn(plan: &Plan, seed: u64, results: &mut Results) {
    for &(pods, policies, events, budget, kernel) in &plan.churn {
        let mut args = size_args("churn", pods, policies, seed);
        args.extend([
            "--events".to_owned(),
            events.to_string(),
            "--budget-s".to_owned(),
            budget.to_string(),
            "--kernel-events".to_owned(),
            kernel.to_string(),
        ]);
        collect(
            format!("churn {pods} pods × {policies} policies"),
            &args,
            plan.timeout,
            &mut results.churn,
            &mut results.skipped,
        );
    }
}

/// Measurement 10, one process per size.
fn policy_churn(plan: &Plan, seed: u64, results: &mut Results) {
    for &(pods, policies, events, budget) in &plan.policy_churn {
        let mut args = size_args("policy-churn", pods, policies, seed);
        args.extend([
            "--events".to_owned(),
            events.to_string(),
            "--budget-s".to_owned(),
            budget.to_string(),
        ]);
        collect(
            format!("policy-churn {pods} pods × {policies} policies"),
            &args,
            plan.timeout,
            &mut results.policy_churn,
            &mut results.skipped,
        );
    }
}

fn objects_args(counts: &Counts) -> Vec<String> {
    let mut args = vec![
        "objects".to_owned(),
        "--runs".to_owned(),
        counts.runs.to_string(),
    ];
    for count in &counts.objects {
        args.extend(["--count".to_owned(), count.to_string()]);
    }
    for count in &counts.elements {
        args.extend(["--elements".to_owned(), count.to_string()]);
    }
    args
}

fn schedule_args(schedule: &Schedule) -> [String; 6] {
    [
        "--rounds".to_owned(),
        schedule.rounds.to_string(),
        "--connections".to_owned(),
        schedule.connections.to_string(),
        "--seconds".to_owned(),
        schedule.seconds.to_string(),
    ]
}

fn one<T: DeserializeOwned>(
    what: String,
    args: &[String],
    timeout: Duration,
    skipped: &mut Vec<Skipped>,
) -> Option<T> {
    let mut found = Vec::new();
    collect(what, args, timeout, &mut found, skipped);
    found.pop()
}

/// `previous` with the measurements in `only` replaced by `fresh`'s (and
/// what of them did not finish), the rerun recorded.
pub fn merge(mut previous: Results, fresh: Results, only: &[Measurement]) -> Results {
    for measurement in only {
        match measurement {
            Measurement::Compile => previous.compile.clone_from(&fresh.compile),
            Measurement::Commit => previous.commit.clone_from(&fresh.commit),
            Measurement::Churn => previous.churn.clone_from(&fresh.churn),
            Measurement::Dataplane => {
                let (commit, date) = previous
                    .reruns
                    .iter()
                    .rev()
                    .find(|rerun| rerun.measurements.contains(&Measurement::Dataplane))
                    .map_or_else(
                        || {
                            (
                                previous.machine.commit.clone(),
                                previous.machine.date.clone(),
                            )
                        },
                        |rerun| (rerun.commit.clone(), rerun.date.clone()),
                    );
                let replaced = std::mem::replace(&mut previous.dataplane, fresh.dataplane.clone());
                if !replaced.is_empty() {
                    previous.dataplane_previous = Some(PreviousDataplane {
                        commit,
                        date,
                        results: replaced,
                    });
                }
            }
            Measurement::Memory => previous.memory.clone_from(&fresh.memory),
            Measurement::Rejudge => previous.rejudge.clone_from(&fresh.rejudge),
            Measurement::Features => previous.features.clone_from(&fresh.features),
            Measurement::ClusterPolicies => previous
                .cluster_policies
                .clone_from(&fresh.cluster_policies),
            Measurement::Objects => previous.objects.clone_from(&fresh.objects),
            Measurement::PolicyChurn => previous.policy_churn.clone_from(&fresh.policy_churn),
        }
    }
    // A skip is named after its measurement's subcommand ("dataplane 1000
    // pods"): the old skips of a rerun measurement go, its new ones stay.
    previous.skipped.retain(|skip| {
        !only
            .iter()
            .any(|measurement| skip.what.starts_with(measurement.subcommand()))
    });
    previous.skipped.extend(fresh.skipped);
    let mut measurements = only.to_vec();
    measurements.sort_unstable();
    measurements.dedup();
    previous.reruns.push(Rerun {
        measurements,
        commit: fresh.machine.commit,
        date: fresh.machine.date,
    });
    previous
}

/// Writes `results` as pretty JSON to `path`.
pub fn save(results: &Results, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(results)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads results written by [`save`].
pub fn load(path: &Path) -> Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(commit: &str) -> Results {
        Results {
            machine: Machine {
                commit: commit.to_owned(),
                ..Machine::default()
            },
            mode: "full".to_owned(),
            seed: 1,
            compile: Vec::new(),
            commit: Vec::new(),
            churn: Vec::new(),
            dataplane: Vec::new(),
            dataplane_previous: None,
            memory: Vec::new(),
            rejudge: None,
            features: None,
            cluster_policies: None,
            objects: None,
            policy_churn: Vec::new(),
            skipped: Vec::new(),
            reruns: Vec::new(),
        }
    }

    fn skip(what: &str) -> Skipped {
        Skipped {
            what: what.to_owned(),
            reason: "timeout".to_owned(),
        }
    }

    #[test]
    fn a_rerun_replaces_only_its_measurements_and_their_skips() {
        let mut previous = empty("old");
        previous.rejudge = Some(RejudgeResult {
            flows: Vec::new(),
            notes: vec!["kept".to_owned()],
        });
        previous.skipped = vec![
            skip("dataplane 100000 pods"),
            skip("memory 100000 pods × 10000 policies"),
        ];
        let mut fresh = empty("new");
        fresh.skipped = vec![skip("features 10000 pods × 100 policies")];
        fresh.rejudge = None;
        let merged = merge(
            previous,
            fresh,
            &[
                Measurement::Features,
                Measurement::Dataplane,
                Measurement::Features,
            ],
        );
        assert_eq!(merged.machine.commit, "old");
        assert_eq!(merged.dataplane_previous, None, "nothing measured before");
        assert!(merged.rejudge.is_some(), "rejudge was not rerun");
        let skipped: Vec<&str> = merged.skipped.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "memory 100000 pods × 10000 policies",
                "features 10000 pods × 100 policies"
            ]
        );
        assert_eq!(
            merged.reruns,
            [Rerun {
                measurements: vec![Measurement::Dataplane, Measurement::Features],
                commit: "new".to_owned(),
                date: String::new(),
            }]
        );
    }

    #[test]
    fn a_dataplane_rerun_keeps_the_run_it_replaces() {
        let point = |pods| crate::dataplane::DataplaneResult {
            pods,
            schedule: Schedule {
                rounds: 1,
                connections: 1,
                seconds: 1.0,
            },
            points: Vec::new(),
            notes: Vec::new(),
            load: crate::machine::Load::default(),
            cpu: None,
        };
        let mut first = empty("first");
        first.dataplane = vec![point(1)];
        let mut second = empty("second");
        second.dataplane = vec![point(2)];
        let mut third = empty("third");
        third.dataplane = vec![point(3)];
        let twice = merge(
            merge(first, second, &[Measurement::Dataplane]),
            third,
            &[Measurement::Dataplane],
        );
        assert_eq!(twice.dataplane, [point(3)]);
        let previous = twice.dataplane_previous.unwrap();
        assert_eq!(
            (previous.commit.as_str(), previous.results),
            ("second", vec![point(2)])
        );
    }

    #[test]
    fn results_before_the_rebuilt_dataplane_still_load() {
        let mut old = serde_json::to_value(empty("old")).unwrap();
        old["dataplane"] = serde_json::json!({"pods": 100_000, "seconds": 3.0});
        old.as_object_mut().unwrap().remove("features");
        old.as_object_mut().unwrap().remove("reruns");
        let loaded: Results = serde_json::from_value(old).unwrap();
        assert!(loaded.dataplane.is_empty());
        assert!(loaded.features.is_none());
        let current = serde_json::to_value(empty("new")).unwrap();
        assert_eq!(
            serde_json::from_value::<Results>(current).unwrap(),
            empty("new")
        );
    }
}
