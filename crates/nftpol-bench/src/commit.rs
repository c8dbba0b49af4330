//! Measurement 2: committing one full ruleset through nftpol's netlink
//! batch against `nft -f` of its rendering, each run in a fresh namespace.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use nftpol_ir::diff::{diff, Diff};
use nftpol_ir::render::render;
use nftpol_ir::{Action, Ruleset};
use nftpol_model::{resolve_snapshot, Snapshot};
use nftpol_netlink::{Applied, Dataplane as _, KernelDataplane};
use nftpol_ruleset::compile::compile;
use serde::{Deserialize, Serialize};

use crate::generate::{self, Shape};
use crate::measure::{children_peak_rss_mib, peak_rss_mib, timed, Summary};
use crate::netns::in_fresh_netns;
use crate::options::agent_defaults;

/// What measurement 2 found for one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitResult {
    /// Application pods.
    pub pods: usize,
    /// Policies.
    pub policies: usize,
    /// Rules, sets and elements committed.
    pub rules: usize,
    /// Rules of the rendering `nft -f` loads: all but the verdict log's
    /// original-destination records ([`loadable_by_nft`]).
    #[serde(default)]
    pub nft_rules: usize,
    /// Sets and maps.
    pub sets: usize,
    /// Elements.
    pub elements: usize,
    /// Model (`resolve_snapshot` on the agent's snapshot), once.
    pub resolve_ms: f64,
    /// `compile`, once.
    pub compile_ms: f64,
    /// `diff(None, ir)`, once.
    pub diff_ms: f64,
    /// `render`, once (what `nft -f` needs first).
    pub render_ms: f64,
    /// Netlink batch bytes.
    pub batch_bytes: usize,
    /// Netlink messages.
    pub batch_messages: usize,
    /// Rendered text bytes.
    pub text_bytes: usize,
    /// nftpol: `KernelDataplane::apply` to the kernel's ack, per run.
    pub nftpol_commit: Summary,
    /// `nft -f -` of the rendering, process start to exit, per run.
    pub nft_commit: Summary,
    /// Peak RSS of this process (objects, IR, batch), MiB.
    pub nftpol_peak_rss_mib: f64,
    /// Peak RSS of the largest `nft` process, MiB.
    pub nft_peak_rss_mib: f64,
}

impl CommitResult {
    /// nftpol's full sync: compile (model + compile + diff) and commit (median).
    pub fn nftpol_full_sync_ms(&self) -> f64 {
        self.resolve_ms + self.compile_ms + self.diff_ms + self.nftpol_commit.p50
    }

    /// The same via nft: model + compile + render, and `nft -f` (median).
    pub fn nft_full_sync_ms(&self) -> f64 {
        self.resolve_ms + self.compile_ms + self.render_ms + self.nft_commit.p50
    }
}

/// `ruleset` without the rules that update a map: nft 1.0.6 cannot load the
/// verdict log's original-destination records from text (a dynset key over
/// 16 bytes trips an assertion in its register allocation; README,
/// "verdict log"), so `nft -f` is given the rest, two rules fewer per
/// isolating group's chain than nftpol commits.
pub fn loadable_by_nft(ruleset: &Ruleset) -> Ruleset {
    let mut loadable = ruleset.clone();
    for chain in loadable.chains.values_mut() {
        chain
            .rules
            .retain(|rule| !matches!(rule.action, Action::Update(_)));
    }
    loadable
}

/// Feeds `text` to `nft -f -` in the calling thread's namespace.
pub fn nft_load(text: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (install the nftables package)")?;
    child
        .stdin
        .take()
        .context("nft's stdin")?
        .write_all(text.as_bytes())
        .context("writing to nft")?;
    let output = child.wait_with_output().context("waiting for nft")?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        let head: String = message.chars().take(2000).collect();
        bail!("nft -f failed: {head}");
    }
    Ok(())
}

/// Commits `changes` (a first sync) in a fresh namespace through
/// `KernelDataplane::apply`: what was sent, and ms to the kernel's ack.
pub fn commit_in_fresh_netns(changes: &Diff) -> Result<(Applied, f64)> {
    in_fresh_netns(|| {
        let mut kernel = KernelDataplane::open().context("opening the netlink socket")?;
        let (sent, elapsed) = timed(|| kernel.apply(changes));
        Ok((sent.context("nftpol's batch was rejected")?, elapsed))
    })
}

/// Runs measurement 2 for `shape`, `runs` times per tool.
pub fn run(shape: Shape, runs: usize) -> Result<CommitResult> {
    let snapshot = Snapshot::from(&generate::cluster(shape));
    let (model, resolve_ms) = timed(|| resolve_snapshot(&snapshot, generate::NODE));
    drop(snapshot);
    let (ruleset, compile_ms) = timed(|| compile(&model, agent_defaults()).ruleset);
    drop(model);
    let (changes, diff_ms) = timed(|| diff(None, &ruleset));
    let for_nft = loadable_by_nft(&ruleset);
    let (text, render_ms) = timed(|| render(&for_nft));
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut applied = None;
    for _ in 0..runs {
        let (sent, elapsed) = commit_in_fresh_netns(&changes)?;
        applied = Some(sent);
        ours.push(elapsed);
        let ((), elapsed) = in_fresh_netns(|| {
            let (loaded, elapsed) = timed(|| nft_load(&text));
            loaded?;
            Ok(((), elapsed))
        })?;
        theirs.push(elapsed);
    }
    let applied = applied.unwrap_or_default();
    Ok(CommitResult {
        pods: shape.pods,
        policies: shape.policies,
        rules: ruleset.rule_count(),
        nft_rules: for_nft.rule_count(),
        sets: ruleset.sets.len(),
        elements: ruleset.element_count(),
        resolve_ms,
        compile_ms,
        diff_ms,
        render_ms,
        batch_bytes: applied.bytes,
        batch_messages: applied.messages,
        text_bytes: text.len(),
        nftpol_commit: Summary::of(&ours),
        nft_commit: Summary::of(&theirs),
        nftpol_peak_rss_mib: peak_rss_mib(),
        nft_peak_rss_mib: children_peak_rss_mib(),
    })
}
