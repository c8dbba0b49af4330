//! Structured clusters → model → IR → render. On every input: no panic, the
//! IR interpreter agrees with the semantic evaluator on the probed
//! connections, a corrupted policy never allows more (fail closed), a policy
//! with an invalid podSelector isolates its whole namespace, and (sampled)
//! `nft -c` accepts the rendering.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nftpol_fuzz::{
    check_agreement, check_fails_closed, check_isolates_namespace, sample_nft_check, Corruption,
    Scenario,
};
use nftpol_ir::render::render;

fuzz_target!(|scenario: Scenario| {
    let cluster = scenario.cluster();
    let connections = scenario.connections(&cluster);
    let ruleset = check_agreement(&cluster, &connections);
    sample_nft_check(&render(&ruleset));
    if let Some((corrupted, index, how)) = scenario.corrupted(&cluster) {
        check_fails_closed(&cluster, &ruleset, &corrupted, &connections);
        if matches!(how, Corruption::PodSelector) {
            check_isolates_namespace(&corrupted, &corrupted.policies[index]);
        }
    }
});
