//! Section 9: the kernel's commit cost per object kind, and what it
//! predicts for the largest compiled ruleset.

use std::fmt::Write as _;

use super::{count, ms};
use crate::measure::usize_f64;
use crate::objects::{ObjectKind, ObjectsResult};
use crate::run::Results;

// `let _ = writeln!(…)` throughout: writing to a String cannot fail.
pub(super) fn section(md: &mut String, results: &Results) {
    let Some(objects) = &results.objects else {
        return;
    };
    let _ = writeln!(
        md,
        "## 9. Kernel commit cost per object\n\n\
         Each point commits one first-sync batch (`KernelDataplane::apply`, to the ack) into a fresh network \
         namespace: a baseline table (one base chain, one regular chain, an empty hash set and an empty interval \
         set; {} ms) plus N objects of one kind, nothing else varied. µs per object is (median commit − \
         baseline) / N; a figure that grows with N means each object costs more the more the table holds.\n",
        ms(objects.baseline.p50)
    );
    let _ = writeln!(
        md,
        "| object | N | batch | commit ms (min–max) | µs per object |\n|---|---:|---:|---:|---:|"
    );
    for point in &objects.points {
        let _ = writeln!(
            md,
            "| {} | {} | {} KiB, {} msgs | {} ({}–{}) | {:.1} |",
            point.kind.label(),
            count(point.count),
            count(point.bytes / 1024),
            count(point.messages),
            ms(point.commit.p50),
            ms(point.commit.min),
            ms(point.commit.max),
            point.per_object_us(&objects.baseline)
        );
    }
    md.push('\n');
    estimate(md, results, objects);
}

/// The largest compiled ruleset's objects priced at their counts.
fn estimate(md: &mut String, results: &Results, objects: &ObjectsResult) {
    let Some(big) = results.compile.iter().max_by_key(|c| (c.policies, c.pods)) else {
        return;
    };
    let per = |kind, count| objects.per_object_us_at(kind, count);
    // A chain at the empty chain's price (the jump to it is a rule, and
    // the jumped-chain points show it adds little); a compiled set is
    // looked up by a rule: the looked-up set's price less that rule's.
    let chain_us = per(ObjectKind::Chain, big.chains);
    let set_us =
        (per(ObjectKind::LookedUpSet, big.sets) - per(ObjectKind::Rule, big.sets)).max(0.0);
    let parts = [
        ("chains", big.chains, chain_us),
        ("rules", big.rules, per(ObjectKind::Rule, big.rules)),
        ("sets", big.sets, set_us),
        (
            "elements",
            big.elements,
            per(ObjectKind::Element, big.elements),
        ),
    ];
    let total_ms: f64 = parts
        .iter()
        .map(|(_, n, us)| usize_f64(*n) * us / 1000.0)
        .sum();
    let _ = writeln!(
        md,
        "Priced per object at its count in the table (interpolated between the points; a chain at the empty \
         chain's cost, a set at the looked-up set's less its rule's), the ruleset of {} pods / \
         {} policies (section 1) would commit in about {} ms:\n",
        count(big.pods),
        count(big.policies),
        ms(total_ms)
    );
    let _ = writeln!(
        md,
        "| object | count | µs each | ms | share |\n|---|---:|---:|---:|---:|"
    );
    for (name, n, us) in parts {
        let part_ms = usize_f64(n) * us / 1000.0;
        let share = if total_ms > 0.0 {
            100.0 * part_ms / total_ms
        } else {
            0.0
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {us:.1} | {} | {share:.0} % |",
            count(n),
            ms(part_ms)
        );
    }
    md.push('\n');
}
