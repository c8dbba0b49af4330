//! Measurement 7: what the agent's optional dataplane features cost
//! (issues #13 and #14: within 3 % of both off, in the same run).
//!
//! The lab of [`crate::dataplane`] at one cluster size, four setups of
//! nftpol's ruleset compiled with the options `nftpol agent` derives from
//! its flags (`crates/nftpol/src/agent.rs`): both off (the baseline),
//! `--rejudge-established` (the default mark bits, first generation),
//! `--verdict-log=deny` (the default NFLOG group), and both (the agent's
//! defaults). Every setup is measured in each of several interleaved rounds
//! ([`crate::rounds`]): a sample of new connections (latency p50 and p99,
//! the rate over time spent connecting) and a bulk TCP stream over one
//! established flow for a few seconds. The ratio of each figure to the
//! baseline's is the feature's cost.
//!
//! No NFLOG listener is bound in the lab, so a logged packet is not copied
//! anywhere; but the allowed traffic measured here never reaches a log
//! rule (they sit on deny paths, before the drop), so a listener would not
//! change it.

use anyhow::Result;
use nftpol_ir::Ruleset;
use serde::{Deserialize, Serialize};

use crate::lab::{self, Tables};
use crate::machine::{load_average, Load};
use crate::options::agent_with;
use crate::rounds::{self, Point, Schedule, Setup, Trial};

/// What measurement 7 found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesResult {
    /// Generated pods.
    pub pods: usize,
    /// Generated policies.
    pub policies: usize,
    /// Rounds and traffic per round.
    pub schedule: Schedule,
    /// Baseline first, then re-judging, verdict log, both.
    pub points: Vec<Point>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
    /// The machine's load around the measurement.
    #[serde(default)]
    pub load: Load,
}

impl FeaturesResult {
    /// Both features off.
    pub fn baseline(&self) -> Option<&Point> {
        self.points
            .iter()
            .find(|point| point.setup == Setup::NFTPOL)
    }
}

/// Runs measurement 7.
pub fn run(pods: usize, policies: usize, schedule: Schedule, seed: u64) -> Result<FeaturesResult> {
    let start = load_average();
    let rt = lab::runtime()?;
    let lab = lab::build(&rt)?;
    let reference = lab::build_reference(&rt)?;
    eprintln!("nftpol-bench: compiling {pods} pods × {policies} policies four ways …");
    let cluster = lab::cluster(pods, policies, seed, &lab);
    let trials: Vec<Trial> = [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .map(|(rejudge, verdict_log_deny)| {
            let rulesets = lab::rulesets_with(&cluster, agent_with(rejudge, verdict_log_deny))
                .map(|compiled| compiled.ruleset);
            let elements = rulesets.iter().map(Ruleset::element_count).sum();
            let tables = Tables::Nftpol(Box::new(rulesets));
            let rules = tables.rules(0);
            Trial::new(
                Setup::Nftpol {
                    rejudge,
                    verdict_log_deny,
                },
                policies,
                tables,
                (rules, elements),
                true,
            )
        })
        .collect();
    drop(cluster);
    let (points, notes) = rounds::run_enforcing(lab, reference, trials, &schedule)?;
    Ok(FeaturesResult {
        pods,
        policies,
        schedule,
        points,
        notes,
        load: Load {
            start,
            end: load_average(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftpol_ir::Action;
    use nftpol_ruleset::compile::CompileOptions;

    fn logs(options: CompileOptions) -> bool {
        let cluster = crate::generate::cluster(crate::generate::Shape {
            pods: 200,
            policies: 25,
            seed: 1,
        });
        let compiled = nftpol_ruleset::compile::compile(
            &nftpol_model::resolve(&cluster, crate::generate::NODE),
            options,
        );
        compiled
            .ruleset
            .chains
            .values()
            .flat_map(|chain| &chain.rules)
            .any(|rule| matches!(rule.action, Action::Log(_)))
    }

    #[test]
    fn each_setup_compiles_what_its_flags_ask_for() {
        for (rejudge, deny) in [(false, false), (true, false), (false, true), (true, true)] {
            let options = agent_with(rejudge, deny);
            assert_eq!(options.rejudge.is_some(), rejudge, "{rejudge} {deny}");
            assert_eq!(logs(options), deny, "{rejudge} {deny}");
        }
    }
}
