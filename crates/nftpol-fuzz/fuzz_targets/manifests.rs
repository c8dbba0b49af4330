//! Scenario YAML → objects (`nftpol_model::manifests::parse`) → model → IR →
//! render. On every input: no panic; when the text parses, the IR
//! interpreter agrees with the semantic evaluator between the first pod
//! addresses, and (sampled) `nft -c` accepts the rendering.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nftpol_fuzz::{addresses, check_agreement, sample_nft_check};
use nftpol_ir::render::render;
use nftpol_model::{Connection, Protocol};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(parsed) = nftpol_model::manifests::parse(text) else {
        return;
    };
    let pool = addresses(&parsed.cluster);
    let connections: Vec<Connection> = pool
        .iter()
        .take(4)
        .flat_map(|source| {
            pool.iter()
                .take(4)
                .map(move |destination| (*source, *destination))
        })
        .filter(|(source, destination)| source.is_ipv4() == destination.is_ipv4())
        .map(|(source, destination)| Connection {
            source,
            destination,
            protocol: Protocol::Tcp,
            port: 80,
        })
        .collect();
    let ruleset = check_agreement(&parsed.cluster, &connections);
    sample_nft_check(&render(&ruleset));
});
