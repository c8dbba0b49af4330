//! Sections 4 (dataplane), 7 (feature costs) and 8 (ClusterNetworkPolicy)
//! of `BENCHMARKS.md`, their target rows and the latency plot.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{count, met, ms, svg_error};
use crate::cluster_policies::ClusterPolicyResult;
use crate::dataplane::DataplaneResult;
use crate::features::FeaturesResult;
use crate::machine::Load;
use crate::measure::usize_f64;
use crate::measure::Spread;
use crate::rounds::{Point, Setup};
use crate::run::{PreviousDataplane, Results};

/// Target of #11: nftpol's connect latency p50 and p99 at most this much
/// above conntrack-only's, at every size.
const OVER_CONNTRACK: f64 = 1.05;
/// Target of #13 and #14: a feature costs at most this share of the
/// baseline's throughput and connection rate.
const FEATURE_COST: f64 = 0.03;

/// A latency in ms as µs (a tenth: connects take 10–20 µs here, so a
/// whole µs is 5–10 % of one).
fn us(ms: f64) -> String {
    format!("{:.1}", ms * 1000.0)
}

/// Median and range, each formatted by `show`.
fn spread(spread: &Spread, show: fn(f64) -> String) -> String {
    format!(
        "{} ({}–{})",
        show(spread.median),
        show(spread.min),
        show(spread.max)
    )
}

/// The machine's load around a measurement, in words.
fn load(load: &Load) -> String {
    format!(
        "Load average {:.2} at the start, {:.2} at the end: above a few tenths, other work shared the CPUs, \
         and the lower end of each range is nearer the uncontended figure.",
        load.start, load.end
    )
}

fn rate(value: f64) -> String {
    format!("{value:.0}")
}

fn one_decimal(value: f64) -> String {
    format!("{value:.1}")
}

fn gbit(value: f64) -> String {
    format!("{value:.2}")
}

/// `value / base - 1` as a signed percentage.
fn change(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:+.1} %", (value / base - 1.0) * 100.0)
    } else {
        "–".to_owned()
    }
}

/// A point's connect latency over conntrack-only's, (p50, p99): from the
/// samples paired with the reference lab where both have them (each
/// point's ratio to the reference taken at the same moments, then one over
/// the other, which also cancels what differs between the two labs), else
/// from the medians over rounds.
fn versus_conntrack(point: &Point, conntrack: &Point) -> (f64, f64) {
    let ratio = |value: f64, base: f64| {
        if base > 0.0 {
            value / base
        } else {
            f64::INFINITY
        }
    };
    match (
        point.paired_p50,
        point.paired_p99,
        conntrack.paired_p50,
        conntrack.paired_p99,
    ) {
        (Some(p50), Some(p99), Some(c50), Some(c99)) => {
            (ratio(p50.median, c50.median), ratio(p99.median, c99.median))
        }
        _ => (
            ratio(point.p50_ms.median, conntrack.p50_ms.median),
            ratio(point.p99_ms.median, conntrack.p99_ms.median),
        ),
    }
}

/// The worst nftpol/conntrack-only latency ratios at one pod count: (p50
/// ratio, p99 ratio, policies of the worst p50, of the worst p99).
fn over_conntrack(d: &DataplaneResult) -> Option<(f64, f64, usize, usize)> {
    let conntrack = d.conntrack_only()?;
    let ratios: Vec<((f64, f64), usize)> = d
        .of(Setup::NFTPOL)
        .map(|p| (versus_conntrack(p, conntrack), p.policies))
        .collect();
    let p50 = ratios
        .iter()
        .map(|&((p50, _), policies)| (p50, policies))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    let p99 = ratios
        .iter()
        .map(|&((_, p99), policies)| (p99, policies))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some((p50.0, p99.0, p50.1, p99.1))
}

/// What stands between nftpol and conntrack-only at one pod count, p50 in
/// ms of conntrack-only's: (what nftpol's fixed checks add with no policy,
/// what the policies add on top at the worst policy count, that count).
fn latency_parts(d: &DataplaneResult) -> Option<(f64, f64, usize)> {
    let conntrack = d.conntrack_only()?;
    let base = conntrack.p50_ms.median;
    let over: Vec<(f64, usize)> = d
        .of(Setup::NFTPOL)
        .map(|p| (versus_conntrack(p, conntrack).0, p.policies))
        .collect();
    let skeleton = over.iter().find(|(_, policies)| *policies == 0)?.0;
    let worst = over.iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some((
        (skeleton - 1.0) * base,
        (worst.0 - skeleton) * base,
        worst.1,
    ))
}

/// One sentence per pod count on where nftpol's latency over
/// conntrack-only goes, against what the 5 % target leaves.
fn latency_bound(md: &mut String, d: &DataplaneResult) {
    let (Some(conntrack), Some((skeleton, policies, at))) = (d.conntrack_only(), latency_parts(d))
    else {
        return;
    };
    let _ = writeln!(
        md,
        "\nOver conntrack-only's p50 of {} µs, nftpol's fixed checks with no policy (four base-chain passes, two a \
         router; on a local pod's side the local-address, self-pair, unknown-pod and dispatch lookups) add {} µs, and the policies {} µs more at their worst \
         ({} policies); the 5 % target leaves {} µs for both.",
        us(conntrack.p50_ms.median),
        us(skeleton),
        us(policies),
        count(at),
        us(conntrack.p50_ms.median * (OVER_CONNTRACK - 1.0))
    );
}

/// A feature's throughput, connection-rate and p50 ratios to the
/// baseline; the rate and p50 from the samples paired with the reference
/// lab where both have them (each one's ratio to the reference at the same
/// moments, then one over the other).
fn feature_cost(f: &FeaturesResult, setup: Setup) -> Option<(f64, f64, f64)> {
    let base = f.baseline()?;
    let point = f.points.iter().find(|p| p.setup == setup)?;
    let gbit = |p: &Point| p.gbit_per_s.map_or(0.0, |g| g.median);
    let ratio = |value: f64, base: f64| if base > 0.0 { value / base } else { 0.0 };
    let (rate, p50) = match (
        point.paired_rate,
        point.paired_p50,
        base.paired_rate,
        base.paired_p50,
    ) {
        (Some(rate), Some(p50), Some(base_rate), Some(base_p50)) => (
            ratio(rate.median, base_rate.median),
            ratio(p50.median, base_p50.median),
        ),
        _ => (
            ratio(point.per_s.median, base.per_s.median),
            ratio(point.p50_ms.median, base.p50_ms.median),
        ),
    };
    Some((ratio(gbit(point), gbit(base)), rate, p50))
}

/// The target rows of #11 (per pod count), #13 and #14.
pub(super) fn headline(md: &mut String, results: &Results) {
    for d in &results.dataplane {
        let Some((p50, p99, at_p50, at_p99)) = over_conntrack(d) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| connect latency p50 and p99 ≤ conntrack-only + 5 % at {} pods | worst p50 {} at {} policies, worst p99 {} at {} policies ({}medians of {} rounds) | {} |",
            count(d.pods),
            change(p50, 1.0),
            count(at_p50),
            change(p99, 1.0),
            count(at_p99),
            if d.conntrack_only().is_some_and(|c| c.paired_p50.is_some()) {
                "paired with the reference lab, "
            } else {
                ""
            },
            d.schedule.rounds,
            met(p50 <= OVER_CONNTRACK && p99 <= OVER_CONNTRACK)
        );
    }
    let Some(f) = &results.features else {
        return;
    };
    for (flag, setup) in [
        (
            "re-judging on (#14)",
            Setup::Nftpol {
                rejudge: true,
                verdict_log_deny: false,
            },
        ),
        (
            "`--verdict-log=deny` (#13)",
            Setup::Nftpol {
                rejudge: false,
                verdict_log_deny: true,
            },
        ),
    ] {
        let Some((gbit, rate, _)) = feature_cost(f, setup) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {flag}: bulk throughput and new-connection rate within 3 % of off | throughput {}, connection rate {} ({} pods, {} policies, {}medians of {} rounds) | {} |",
            change(gbit, 1.0),
            change(rate, 1.0),
            count(f.pods),
            count(f.policies),
            if f.baseline().is_some_and(|b| b.paired_rate.is_some()) {
                "rate paired with the reference lab, "
            } else {
                ""
            },
            f.schedule.rounds,
            met(gbit >= 1.0 - FEATURE_COST && rate >= 1.0 - FEATURE_COST)
        );
    }
}

/// Section 4: one table per pod count, and how it compares with the run a
/// rerun replaced.
pub(super) fn section(
    md: &mut String,
    results: &[DataplaneResult],
    previous: Option<&PreviousDataplane>,
    plot: &str,
) {
    let _ = writeln!(
        md,
        "## 4. Dataplane: new TCP connections between two pods on different nodes\n\n\
         nftpol-lab namespaces (fabric, two node routers, two pods; removed afterwards). The client pod (app-0 on node-1) \
         connects to the server pod (app-1 on node-2) on port 8080, allowed by the generated policies, whose pods are \
         all set elements. Setups, on both routers: **no table**; **conntrack only** (a table of its own holding only \
         `ct state established,related accept` on the forward hook: conntrack runs only where some rule needs it, so \
         this, not no table, is what a stateful enforcer can reach); **nftpol** (committed through netlink; re-judging \
         and the verdict log off, their cost is section 7); **linear rules** (the same allow-list as one rule per peer \
         address and per local pod, as iptables-based agents generate, loaded with `nft -f`, up to 400,000 rules).\n\n\
         Every setup is loaded, measured and removed again in each of several **interleaved rounds** (order reversed \
         every other round). A round's sample is sequential connects from one client thread, each from a **source port \
         of its own** (one cursor over 64,512 ports for the whole run: no 4-tuple repeats inside a sample, and a port \
         returns only after all others were used), each closed with RST; the server pod's kernel completes each \
         handshake and nothing accepts, so no server thread competes for the CPUs mid-sample. Latency is `connect()` to the handshake's \
         end; figures are the **median over rounds of each round's p50 and p99, with the range** in brackets. \
         Each sample is **paired**: its connects go in blocks of 50 alternating with as many in a second lab of the \
         same shape that holds conntrack-only all along (the reference lab), and `p50 vs reference lab` is each \
         round's p50 over the reference's of the same moments (median, then the range over rounds). This machine's \
         speed changes by up to 1.5× from one round to the next, for every setup alike, which the paired ratio does \
         not see. `vs conntrack only` divides a setup's paired ratio by the conntrack-only setup's (which cancels \
         what differs between the two labs; the conntrack-only row's own paired range is the noise floor). The \
         rate is connections per second of time spent connecting (the sum of the latencies), not of wall time. \
         CPU is the client thread's CPU time inside `connect()` (`CLOCK_THREAD_CPUTIME_ID`, median of each round): \
         veth delivery runs both routers' forwarding and the server's SYN-ACK in softirq on the sending thread, \
         which this kernel (no IRQ time accounting) charges to it, so it is the kernel's CPU per connection without \
         the scheduler's waits. Softirq is the machine's softirq time from `/proc/stat` over all rounds per completed connection (the \
         kernel runs both routers' forwarding in softirq; tick-sampled and machine-wide, so a busy machine adds to \
         it). `denied` is what a connect to a port no policy allows did in round 1 (refused: no filtering; \
         dropped: enforced). Rules are node-1 + node-2.\n"
    );
    if results.is_empty() {
        let _ = writeln!(md, "Not measured in this run (see below).\n");
        return;
    }
    for d in results {
        table(md, d);
    }
    let _ = writeln!(md, "![connect latency p50](results/{plot})\n");
    if let Some(previous) = previous {
        repeatability(md, results, previous);
    }
}

/// Each setup's medians against the same setup's in the replaced run: the
/// absolute p50 and p99, which move with the machine's speed, and the p50
/// over conntrack-only, which the target judges.
fn repeatability(md: &mut String, results: &[DataplaneResult], previous: &PreviousDataplane) {
    let _ = writeln!(
        md,
        "### Against the previous run\n\n\
         The same measurement as the run this one replaced (commit `{}`, {}): how well the medians repeat.\n\n\
         | pods | setup | policies | p50 µs now / before | change | p99 µs now / before | change | p50 vs conntrack only now / before |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|",
        previous.commit, previous.date
    );
    let mut worst_absolute: f64 = 0.0;
    let mut worst_versus: f64 = 0.0;
    for d in results {
        let Some(before) = previous.results.iter().find(|b| b.pods == d.pods) else {
            continue;
        };
        let conntrack = (d.conntrack_only(), before.conntrack_only());
        for p in &d.points {
            let Some(b) = before
                .points
                .iter()
                .find(|b| b.setup == p.setup && b.policies == p.policies)
            else {
                continue;
            };
            if b.p50_ms.median > 0.0 {
                worst_absolute =
                    worst_absolute.max((p.p50_ms.median / b.p50_ms.median - 1.0).abs());
            }
            let versus = match conntrack {
                (Some(now), Some(then)) => {
                    let (now, then) = (versus_conntrack(p, now).0, versus_conntrack(b, then).0);
                    if matches!(p.setup, Setup::Nftpol { .. }) {
                        worst_versus = worst_versus.max((now - then).abs());
                    }
                    format!("{} / {}", change(now, 1.0), change(then, 1.0))
                }
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} / {} | {} | {} / {} | {} | {versus} |",
                count(d.pods),
                p.setup,
                count(p.policies),
                us(p.p50_ms.median),
                us(b.p50_ms.median),
                change(p.p50_ms.median, b.p50_ms.median),
                us(p.p99_ms.median),
                us(b.p99_ms.median),
                change(p.p99_ms.median, b.p99_ms.median)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nLargest change between the two runs: of a median p50, {:.1} %; of nftpol's p50 over conntrack-only, \
         {:.1} percentage points.\n",
        worst_absolute * 100.0,
        worst_versus * 100.0
    );
}

fn table(md: &mut String, d: &DataplaneResult) {
    let pinned = d.cpu.map_or_else(
        || "Measured before the measuring threads were pinned to one CPU.".to_owned(),
        |cpu| format!("Every measuring thread pinned to CPU {cpu}."),
    );
    let _ = writeln!(
        md,
        "### {} pods\n\n{} rounds × {} connections per setup; throughput {} s per round. {pinned} {}\n",
        count(d.pods),
        d.schedule.rounds,
        count(d.schedule.connections),
        d.schedule.seconds,
        load(&d.load)
    );
    let _ = writeln!(md, "| setup | policies | rules | load ms | connect p50 µs | p99 µs | p50 vs reference lab, per round | p50 / p99 vs conntrack only | conn/s connecting | CPU µs/connect | softirq µs/conn | failures | denied |");
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let conntrack = d.conntrack_only();
    for p in &d.points {
        let versus = conntrack.map_or_else(
            || "–".to_owned(),
            |c| {
                let (p50, p99) = versus_conntrack(p, c);
                format!("{} / {}", change(p50, 1.0), change(p99, 1.0))
            },
        );
        let paired = p.paired_p50.map_or_else(
            || "–".to_owned(),
            |r| {
                format!(
                    "{} ({} to {})",
                    change(r.median, 1.0),
                    change(r.min, 1.0),
                    change(r.max, 1.0)
                )
            },
        );
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {paired} | {versus} | {} | {} | {:.1} | {} | {} |",
            p.setup,
            count(p.policies),
            count(p.rules),
            ms(p.load_ms.median),
            spread(&p.p50_ms, us),
            spread(&p.p99_ms, us),
            spread(&p.per_s, rate),
            spread(&p.cpu_us, one_decimal),
            p.softirq_us_per_connection,
            p.failures,
            p.denied_port
        );
    }
    latency_bound(md, d);
    for note in &d.notes {
        let _ = writeln!(md, "\nNot measured: {note}.");
    }
    let with_throughput: Vec<&Point> = d.points.iter().filter(|p| p.gbit_per_s.is_some()).collect();
    if !with_throughput.is_empty() {
        let _ = writeln!(md, "\nBulk throughput of one established flow, Gbit/s:\n\n| setup | policies | Gbit/s | vs conntrack only |\n|---|---:|---:|---:|");
        let base = conntrack
            .and_then(|c| c.gbit_per_s)
            .map_or(0.0, |g| g.median);
        for p in with_throughput {
            let g = p.gbit_per_s.unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                p.setup,
                count(p.policies),
                spread(&g, gbit),
                change(g.median, base)
            );
        }
    }
    md.push('\n');
}

/// A row of section 7: its name, the figure, its format, and whether
/// higher is better.
type Figure = (&'static str, fn(&Point) -> Spread, fn(f64) -> String, bool);

/// A ratio to the reference lab, as a percentage over it.
fn over_reference(ratio: f64) -> String {
    change(ratio, 1.0)
}

/// The rows of section 7.
const FIGURES: [Figure; 7] = [
    (
        "bulk throughput, Gbit/s",
        |p| p.gbit_per_s.unwrap_or_default(),
        gbit,
        true,
    ),
    ("new connections / s connecting", |p| p.per_s, rate, true),
    ("connect p50, µs", |p| p.p50_ms, us, false),
    ("connect p99, µs", |p| p.p99_ms, us, false),
    ("CPU per connect, µs", |p| p.cpu_us, one_decimal, false),
    (
        "new connections / s over the reference lab's (paired)",
        |p| p.paired_rate.unwrap_or_default(),
        over_reference,
        true,
    ),
    (
        "connect p50 over the reference lab's (paired)",
        |p| p.paired_p50.unwrap_or_default(),
        over_reference,
        false,
    ),
];

/// Whether `value` is within [`FEATURE_COST`] of `reference`, in the
/// direction that costs.
fn within(value: f64, reference: f64, higher_is_better: bool) -> &'static str {
    if reference <= 0.0 {
        return "–";
    }
    let ratio = value / reference;
    let ok = if higher_is_better {
        ratio >= 1.0 - FEATURE_COST
    } else {
        ratio <= 1.0 + FEATURE_COST
    };
    if ok {
        "(within 3 %)"
    } else {
        "(**not within 3 %**)"
    }
}

/// Section 7: the feature costs.
pub(super) fn features_section(md: &mut String, features: Option<&FeaturesResult>) {
    let _ = writeln!(
        md,
        "## 7. Feature costs: re-judging and the verdict log\n\n\
         The lab of section 4, nftpol's ruleset compiled four ways with the options `nftpol agent` derives from its \
         flags: both off (the baseline), `--rejudge-established` (default mark bits, first generation), \
         `--verdict-log=deny` (default NFLOG group), and both (the agent's defaults). Interleaved rounds as in \
         section 4, each sample paired with the conntrack-only reference lab as there; each round takes a sample of \
         new connections and a bulk TCP stream over one established flow. The connection rate judged is the paired \
         one (each setup's over the reference's at the same moments, over the baseline's). \
         Figures are medians over rounds with the range in brackets, then the change from the baseline's median; \
         **within 3 %** means throughput and rate at least 97 % of the baseline's, latency and CPU at most 103 %. A ratio inside the \
         baseline's own range between rounds is noise, not cost. Log rules sit on deny paths only, so no packet \
         measured here reaches one (and no NFLOG listener is bound).\n"
    );
    let Some(f) = features else {
        let _ = writeln!(md, "Not measured in this run (see below).\n");
        return;
    };
    let _ = writeln!(
        md,
        "{} pods, {} policies; {} rounds × {} connections and {} s of stream per setup. {}\n",
        count(f.pods),
        count(f.policies),
        f.schedule.rounds,
        count(f.schedule.connections),
        f.schedule.seconds,
        load(&f.load)
    );
    let Some(base) = f.baseline() else {
        for note in &f.notes {
            let _ = writeln!(md, "Not measured: {note}.\n");
        }
        return;
    };
    comparison_table(md, &f.points, base, &FIGURES, true);
    let _ = writeln!(
        md,
        "\nSpread of the baseline between rounds: throughput {:.1} %, rate {:.1} %, p50 {:.1} % (range / median).\n",
        base.gbit_per_s.unwrap_or_default().relative_range() * 100.0,
        base.per_s.relative_range() * 100.0,
        base.p50_ms.relative_range() * 100.0
    );
    for note in &f.notes {
        let _ = writeln!(md, "Not measured: {note}.\n");
    }
}

/// One row per figure, one column per point (the baseline's, `NFTPOL`,
/// shows its median and range; every other its change from the baseline
/// too and, with `judged`, whether that is within [`FEATURE_COST`]).
fn comparison_table(
    md: &mut String,
    points: &[Point],
    base: &Point,
    figures: &[Figure],
    judged: bool,
) {
    let header: Vec<String> = points
        .iter()
        .map(|p| format!("{} ({} rules)", p.setup, count(p.rules)))
        .collect();
    let _ = writeln!(
        md,
        "| row | {} |\n|---|{}",
        header.join(" | "),
        "---:|".repeat(header.len())
    );
    for (row, figure, show, higher_is_better) in figures {
        let reference = figure(base).median;
        let cells: Vec<String> = points
            .iter()
            .map(|p| {
                let value = figure(p);
                if p.setup == Setup::NFTPOL {
                    return spread(&value, *show);
                }
                let mut cell = format!(
                    "{}, {}",
                    spread(&value, *show),
                    change(value.median, reference)
                );
                if judged {
                    cell.push(' ');
                    cell.push_str(within(value.median, reference, *higher_is_better));
                }
                cell
            })
            .collect();
        let _ = writeln!(md, "| {row} | {} |", cells.join(" | "));
    }
}

/// Section 8's full-sync rows and its change-to-enforced line.
fn sync_table(md: &mut String, c: &ClusterPolicyResult) {
    let _ = writeln!(
        md,
        "| CNPs | model ms | compile ms | diff ms | commit ms | full sync ms | rules | chains | sets | elements | batch |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for sync in &c.syncs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} ({}–{}) | {} | {} | {} | {} | {} | {} KiB, {} msgs |",
            count(sync.cluster_policies),
            ms(sync.resolve_ms),
            ms(sync.compile_ms),
            ms(sync.diff_ms),
            ms(sync.commit.p50),
            ms(sync.commit.min),
            ms(sync.commit.max),
            ms(sync.full_sync_ms()),
            count(sync.rules),
            count(sync.chains),
            count(sync.sets),
            count(sync.elements),
            count(sync.batch_bytes / 1024),
            count(sync.batch_messages)
        );
    }
    let enforced = &c.change_to_enforced;
    let _ = writeln!(
        md,
        "\nOne Admin CNP added to this cluster with its {} CNPs, or removed again, snapshot to kernel ack \
         through the agent's `Reconciler` (a full model): median {} ms, max {} ms over {} changes (the agent \
         adds its 20 ms coalescing window and the watch's delivery; the upstream conformance suite allows 10 s).",
        count(c.shape.cluster_policies),
        ms(enforced.p50),
        ms(enforced.max),
        enforced.n
    );
}

pub(super) fn cluster_policies_section(md: &mut String, result: Option<&ClusterPolicyResult>) {
    let _ = writeln!(
        md,
        "## 8. ClusterNetworkPolicy (#12)\n\n\
         **Full sync**: the generated cluster without ClusterNetworkPolicies, then with generated CNPs on top \
         (both tiers alternately, distinct priorities, subjects by namespace, by pod and cluster-wide; rules \
         alternately ingress and egress, Accept, Deny and Pass, peers by namespace, pod and network, TCP ports, \
         UDP ranges or all protocols): model, compile and diff once, the commit in a fresh namespace per run \
         (median, range in brackets), as in section 2. **New connections**: the lab of section 4 on the same \
         cluster, nftpol's ruleset without CNPs and with Admin CNPs selecting both bench pods, each with an \
         ingress and an egress Deny on the bench port for another app, which the bench connection is tested \
         against and never matches (NetworkPolicy then allows it): interleaved rounds as in section 4, medians \
         with the range, then the change from no CNPs.\n"
    );
    let Some(c) = result else {
        let _ = writeln!(md, "Not measured in this run (see below).\n");
        return;
    };
    let _ = writeln!(
        md,
        "{} pods, {} NetworkPolicies; {} CNPs × {} rules for the full sync, {} Admin CNPs in the lab.\n",
        count(c.pods),
        count(c.policies),
        count(c.shape.cluster_policies),
        c.shape.rules,
        c.shape.guards
    );
    sync_table(md, c);
    let _ = writeln!(
        md,
        "\n{} rounds × {} connections per setup. {}\n",
        c.schedule.rounds,
        count(c.schedule.connections),
        load(&c.load)
    );
    let (Some(base), Some(_)) = (c.baseline(), c.guarded()) else {
        for note in &c.notes {
            let _ = writeln!(md, "Not measured: {note}.\n");
        }
        return;
    };
    // No bulk stream here: established packets never reach a CNP chain.
    comparison_table(md, &c.points, base, &FIGURES[1..], false);
    let _ = writeln!(
        md,
        "\nSpread of no CNPs between rounds: rate {:.1} %, p50 {:.1} % (range / median).\n",
        base.per_s.relative_range() * 100.0,
        base.p50_ms.relative_range() * 100.0
    );
    for note in &c.notes {
        let _ = writeln!(md, "Not measured: {note}.\n");
    }
}

/// The no-table and conntrack-only lines of the plot.
fn references<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    d: &DataplaneResult,
    last: f64,
) -> Result<()> {
    for (setup, color) in [(Setup::NoTable, BLACK), (Setup::ConntrackOnly, GREEN)] {
        if let Some(p) = d.of(setup).next() {
            let y = p.p50_ms.median * 1000.0;
            chart
                .draw_series(LineSeries::new(
                    vec![(-0.3, y), (last + 0.3, y)],
                    color.stroke_width(1),
                ))
                .map_err(svg_error)?
                .label(format!("{setup}, {} pods", count(d.pods)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
        }
    }
    Ok(())
}

/// Connect latency p50 against policies: nftpol and linear rules per pod
/// count, conntrack-only and no table as horizontal lines (largest pod
/// count).
pub(super) fn plot(results: &[DataplaneResult], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(svg_error)?;
    let mut ticks: Vec<usize> = results
        .iter()
        .flat_map(|d| d.points.iter().map(|p| p.policies))
        .collect();
    ticks.sort_unstable();
    ticks.dedup();
    if ticks.is_empty() {
        return root.present().map_err(svg_error);
    }
    let top = results
        .iter()
        .flat_map(|d| &d.points)
        .map(|p| p.p50_ms.median * 1000.0)
        .fold(1.0, f64::max)
        * 1.2;
    let labels = ticks.clone();
    let last = usize_f64(ticks.len()) - 1.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "new TCP connection latency p50 vs policies",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.3..(last + 0.3), 0.0..top)
        .map_err(svg_error)?;
    chart
        .configure_mesh()
        .x_desc("policies")
        .y_desc("connect p50, µs")
        .x_labels(ticks.len().max(2))
        .x_label_formatter(&move |x| {
            let rounded = x.round();
            if (x - rounded).abs() > 0.05 || rounded < 0.0 {
                return String::new();
            }
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a small non-negative tick index"
            )]
            let index = rounded as usize;
            labels.get(index).map(|n| count(*n)).unwrap_or_default()
        })
        .draw()
        .map_err(svg_error)?;
    if let Some(largest) = results.iter().max_by_key(|d| d.pods) {
        references(&mut chart, largest, last)?;
    }
    let mut index = 0;
    for d in results {
        for setup in [Setup::NFTPOL, Setup::Linear] {
            let series: Vec<(f64, f64)> = d
                .of(setup)
                .filter_map(|p| {
                    let x = ticks.iter().position(|tick| *tick == p.policies)?;
                    Some((usize_f64(x), p.p50_ms.median * 1000.0))
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let color = Palette99::pick(index).to_rgba();
            index += 1;
            let name = if setup == Setup::Linear {
                "linear rules"
            } else {
                "nftpol"
            };
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
                .map_err(svg_error)?
                .label(format!("{name}, {} pods", count(d.pods)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(series.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(svg_error)?;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(svg_error)?;
    root.present().map_err(svg_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Sample;
    use crate::rounds::Schedule;

    fn point(
        setup: Setup,
        policies: usize,
        p50_us: f64,
        p99_us: f64,
        per_s: f64,
        gbit: f64,
    ) -> Point {
        let one = |value: f64| Spread::of(&[value]);
        Point {
            setup,
            policies,
            rules: 0,
            elements: 0,
            load_ms: Spread::default(),
            p50_ms: one(p50_us / 1000.0),
            p99_ms: one(p99_us / 1000.0),
            paired_p50: None,
            paired_p99: None,
            paired_rate: None,
            per_s: one(per_s),
            cpu_us: one(p50_us / 2.0),
            connections: 1,
            failures: 0,
            softirq_us_per_connection: 0.0,
            gbit_per_s: Some(one(gbit)),
            denied_port: "dropped".to_owned(),
            samples: Vec::<Sample>::new(),
        }
    }

    const SCHEDULE: Schedule = Schedule {
        rounds: 1,
        connections: 1,
        seconds: 1.0,
    };

    /// Measurement 4 at 1,000 pods with `points`.
    fn dataplane(points: Vec<Point>) -> DataplaneResult {
        DataplaneResult {
            pods: 1000,
            schedule: SCHEDULE,
            load: Load::default(),
            cpu: Some(1),
            points,
            notes: Vec::new(),
        }
    }

    #[test]
    fn the_worst_nftpol_point_is_judged_against_conntrack_only() {
        let d = dataplane(vec![
            point(Setup::NoTable, 0, 40.0, 80.0, 0.0, 0.0),
            point(Setup::ConntrackOnly, 0, 50.0, 100.0, 0.0, 0.0),
            point(Setup::NFTPOL, 0, 51.0, 120.0, 0.0, 0.0),
            point(Setup::NFTPOL, 100, 60.0, 101.0, 0.0, 0.0),
            point(Setup::Linear, 100, 500.0, 900.0, 0.0, 0.0),
        ]);
        let (p50, p99, at_p50, at_p99) = over_conntrack(&d).unwrap();
        assert!((p50 - 1.2).abs() < 1e-9, "{p50}");
        assert!((p99 - 1.2).abs() < 1e-9, "{p99}");
        assert_eq!((at_p50, at_p99), (100, 0));
        let (skeleton, policies, at) = latency_parts(&d).unwrap();
        assert!((skeleton - 0.001).abs() < 1e-12, "{skeleton}");
        assert!((policies - 0.009).abs() < 1e-12, "{policies}");
        assert_eq!(at, 100);
        let mut md = String::new();
        latency_bound(&mut md, &d);
        assert!(md.contains("p50 of 50.0 µs, nftpol's fixed checks"), "{md}");
        assert!(md.contains("add 1.0 µs, and the policies 9.0 µs more at their worst (100 policies); the 5 % target leaves 2.5 µs"), "{md}");
    }

    #[test]
    fn paired_samples_judge_against_conntrack_only_through_the_reference_lab() {
        let paired = |mut point: Point, p50: f64, p99: f64| {
            point.paired_p50 = Some(Spread::of(&[p50]));
            point.paired_p99 = Some(Spread::of(&[p99]));
            point
        };
        // The absolute medians say +100 % (a slow round); the ratios to the
        // reference lab taken at the same moments say +10 % and +20 %, on a
        // measured lab 2 % slower than the reference.
        let d = dataplane(vec![
            paired(
                point(Setup::ConntrackOnly, 0, 10.0, 20.0, 0.0, 0.0),
                1.02,
                1.02,
            ),
            paired(point(Setup::NFTPOL, 0, 20.0, 40.0, 0.0, 0.0), 1.122, 1.224),
        ]);
        let (p50, p99, _, _) = over_conntrack(&d).unwrap();
        assert!((p50 - 1.1).abs() < 1e-9, "{p50}");
        assert!((p99 - 1.2).abs() < 1e-9, "{p99}");
        let (skeleton, policies, at) = latency_parts(&d).unwrap();
        assert!((skeleton - 0.001).abs() < 1e-12, "{skeleton} ms");
        assert!(policies.abs() < 1e-12, "{policies} ms");
        assert_eq!(at, 0);
    }

    #[test]
    fn a_feature_is_costed_against_the_baseline() {
        let rejudge = Setup::Nftpol {
            rejudge: true,
            verdict_log_deny: false,
        };
        let f = FeaturesResult {
            pods: 1000,
            policies: 10,
            schedule: SCHEDULE,
            load: Load::default(),
            points: vec![
                point(Setup::NFTPOL, 10, 50.0, 100.0, 20_000.0, 10.0),
                point(rejudge, 10, 55.0, 100.0, 19_000.0, 9.9),
            ],
            notes: Vec::new(),
        };
        let (gbit, rate, p50) = feature_cost(&f, rejudge).unwrap();
        assert!((gbit - 0.99).abs() < 1e-9, "{gbit}");
        assert!((rate - 0.95).abs() < 1e-9, "{rate}");
        assert!((p50 - 1.1).abs() < 1e-9, "{p50}");
        let both = Setup::Nftpol {
            rejudge: true,
            verdict_log_deny: true,
        };
        assert_eq!(feature_cost(&f, both), None);

        // Paired with the reference lab, the paired ratios decide: the
        // feature's rate 2 % below the baseline's at the same moments,
        // whatever the rounds' absolute rates said.
        let mut paired = f.clone();
        for (point, (rate, p50)) in paired.points.iter_mut().zip([(0.9, 1.1), (0.882, 1.122)]) {
            point.paired_rate = Some(Spread::of(&[rate]));
            point.paired_p50 = Some(Spread::of(&[p50]));
        }
        let (gbit, rate, p50) = feature_cost(&paired, rejudge).unwrap();
        assert!((gbit - 0.99).abs() < 1e-9, "{gbit}");
        assert!((rate - 0.98).abs() < 1e-9, "{rate}");
        assert!((p50 - 1.02).abs() < 1e-9, "{p50}");
    }
}
