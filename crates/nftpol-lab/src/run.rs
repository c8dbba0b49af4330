//! One lab run, as named steps: load → place → build → serve → (services) →
//! enforce → probe → tear down.

use std::time::{Duration, Instant};

use nftpol_ruleset::verdict_log::VerdictLogMode;

use crate::error::LabError;
use crate::live::{LiveCluster, LiveOptions};
use crate::netns::{self, RunId};
use crate::plan::{self, Plan};
use crate::probe::{self, Timeouts};
use crate::report::{NodeProbe, Probe, Report, StepReport};
use crate::steps::Step;
use crate::topology::Topology;
use crate::{enforce, service};

/// How long a step may take to reach its expectation before the run
/// reports the probes as they are (the agents follow within a second).
const STEP_PATIENCE: Duration = Duration::from_secs(20);

/// How to run a scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// Lab node count; default: the scenario's Node documents, else the
    /// highest `node-<k>` a pod names, at least 1.
    pub nodes: Option<usize>,
    /// Probe through per-pod ClusterIPs (kube-proxy-style DNAT).
    pub via_service: bool,
    /// Which verdicts the agents log; the lines are collected into the
    /// report (default off).
    pub verdict_log: VerdictLogMode,
    /// Run on the real API server, with the real agent binary, and make
    /// these steps' changes after the first probes (`--apiserver real`);
    /// none: the in-process agents (the default).
    pub live: Option<LiveOptions>,
}

/// Runs `scenario_yaml` in a fresh lab and returns the probe results.
///
/// Synchronous: it builds its own tokio runtime, so call it from a plain
/// thread (or `spawn_blocking`), never from inside an async task. Installs a
/// SIGINT/SIGTERM handler that removes the lab's namespaces before the
/// signal ends the process; on return (success or error) they are removed.
pub fn run(
    scenario_yaml: &str,
    scenario_name: &str,
    options: &RunOptions,
) -> Result<Report, LabError> {
    run_inspected(scenario_yaml, scenario_name, options, |_| ()).map(|(report, ())| report)
}

/// The lab as it stands after the probes, while every agent's table is
/// still installed: for tests that look at a node's kernel state.
#[derive(Debug)]
pub struct Inspection<'a> {
    /// The placed scenario: pods with the addresses the lab gave them.
    pub cluster: &'a nftpol_model::Cluster,
    /// The plan the lab was built from.
    pub plan: &'a Plan,
    /// The probes' results.
    pub probes: &'a [Probe],
    /// Each node's name (its Node document's, or `node-<k>`) and network namespace name, for
    /// `ip netns exec`.
    pub nodes: Vec<(String, String)>,
}

/// [`run`], calling `inspect` after the probes and before the teardown (a
/// panic in it still removes the lab: the namespaces go with their guards).
pub fn run_inspected<T>(
    scenario_yaml: &str,
    scenario_name: &str,
    options: &RunOptions,
    inspect: impl FnOnce(&Inspection<'_>) -> T,
) -> Result<(Report, T), LabError> {
    let started = Instant::now();
    let (cluster, plan) = load(scenario_yaml, scenario_name, options)?;
    check_live_options(options)?;
    require_root()?;
    netns::install_signal_teardown()?;
    let rt = runtime()?;
    let run = RunId::new();
    let span = tracing::info_span!("lab", run = %run, scenario = scenario_name);
    let _entered = span.enter();
    tracing::info!(
        nodes = plan.nodes.len(),
        pods = plan.pods.len(),
        "building the lab"
    );
    let topology = Topology::build(&plan, &run, &rt)?;
    let servers = probe::start_servers(&plan, &topology, &rt)?;
    let dial = if options.via_service {
        service::install(&plan, &topology)?
    } else {
        probe::pod_addresses(&plan)
    };
    tracing::info!(
        servers = servers.count(),
        elapsed_ms = started.elapsed().as_millis(),
        "lab built"
    );
    let (collectors, mut live) = match &options.live {
        None => (
            enforce::enforce(&plan, &topology, &cluster, options.verdict_log, &run)?,
            None,
        ),
        Some(live) => (
            enforce::Collectors::default(),
            Some(LiveCluster::start(live, &cluster, &plan, &topology, &run)?),
        ),
    };
    let probe_now = || probe::probe_all(&plan, &topology, &rt, &dial, Timeouts::default());
    let (probes, node_probes) = probe_now()?;
    let inspected = inspect(&Inspection {
        cluster: &cluster,
        plan: &plan,
        probes: &probes,
        nodes: plan
            .nodes
            .iter()
            .map(|node| {
                (
                    node.name.clone(),
                    topology.node(node.index).name().to_owned(),
                )
            })
            .collect(),
    });
    let mut steps = Vec::new();
    if let (Some(cluster), Some(options)) = (&mut live, &options.live) {
        for step in &options.steps {
            steps.push(run_step(cluster, &topology, step, &probe_now)?);
        }
    }
    let verdicts = collectors.finish()?;
    // The agents and the server go before their namespaces.
    drop(live);
    drop(servers);
    topology.teardown()?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis(),
        "lab run complete"
    );
    Ok((
        Report {
            probes,
            node_probes,
            scenario: scenario_name.to_owned(),
            nodes: plan.nodes.len(),
            via_service: options.via_service,
            verdicts,
            steps,
        },
        inspected,
    ))
}

/// Makes `step`'s changes, waits for the agents to follow, and probes
/// (again, while the step's expectation is not met and time remains).
fn run_step(
    cluster: &mut LiveCluster,
    topology: &Topology,
    step: &Step,
    probe_now: &impl Fn() -> Result<(Vec<Probe>, Vec<NodeProbe>), LabError>,
) -> Result<StepReport, LabError> {
    let span = tracing::info_span!("step", step = %step.name);
    let _entered = span.enter();
    let started = Instant::now();
    cluster.apply(step)?;
    let mut rounds = 0;
    loop {
        cluster.settle(topology)?;
        let (probes, node_probes) = probe_now()?;
        rounds += 1;
        let report = StepReport {
            name: step.name.clone(),
            probes,
            node_probes,
            rounds,
        };
        let Some(expected) = &step.expect else {
            return Ok(report);
        };
        let mismatches = crate::report::compare(&report.as_report(), expected)?.len();
        if mismatches == 0 || started.elapsed() > STEP_PATIENCE {
            tracing::info!(
                rounds,
                mismatches,
                elapsed_ms = started.elapsed().as_millis(),
                "step probed"
            );
            return Ok(report);
        }
        tracing::info!(rounds, mismatches, "not there yet; probing again");
    }
}

/// `--apiserver real` leaves out what only the in-process agents do.
fn check_live_options(options: &RunOptions) -> Result<(), LabError> {
    let only_in_process = if options.live.is_none() {
        None
    } else if options.via_service {
        Some("--via-service")
    } else if options.verdict_log != VerdictLogMode::Off {
        Some("--verdicts")
    } else {
        None
    };
    only_in_process.map_or(Ok(()), |flag| {
        Err(LabError::Options {
            reason: format!(
                "{flag} runs with the in-process agents only, not with --apiserver real"
            ),
        })
    })
}

/// Parses and places the scenario (no privileges needed).
fn load(
    scenario_yaml: &str,
    scenario_name: &str,
    options: &RunOptions,
) -> Result<(nftpol_model::Cluster, Plan), LabError> {
    let parsed =
        nftpol_model::manifests::parse(scenario_yaml).map_err(|source| LabError::Manifest {
            scenario: scenario_name.to_owned(),
            source,
        })?;
    for warning in &parsed.warnings {
        tracing::warn!(scenario = scenario_name, "{warning}");
    }
    let mut cluster = parsed.cluster;
    let plan = plan::place(&mut cluster, options.nodes)?;
    for warning in &plan.warnings {
        tracing::warn!(scenario = scenario_name, "{warning}");
    }
    Ok((cluster, plan))
}

fn require_root() -> Result<(), LabError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// The runtime driving rtnetlink, servers and probes.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lab")
        .enable_all()
        .build()
        .map_err(|source| LabError::Runtime {
            what: "start the async runtime",
            source,
        })
}
