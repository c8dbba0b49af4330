//! The test kit of nftpol — **test-only code**: every crate takes it as a
//! dev-dependency, except the benchmark binary, which uses its namespace
//! guard as a normal dependency (a measurement needs the same throwaway
//! namespace a kernel test does). Nothing in the agent or the CLI links it.
//!
//! What it holds, each once for the whole workspace:
//! - [`netns`]: the network-namespace guard of every kernel test (unique name
//!   from run id and counter, `lo` up, removed on drop even after a panic, a
//!   clear message without root) and a sweep for namespaces the code under
//!   test makes itself (the lab's);
//! - [`nft`]: `nft -c -f` of a rendering in a throwaway namespace;
//! - [`plan`] and [`fixtures`]: the address plan and the object builders,
//!   `pod("x", "a").label("pod", "a").port(80, Tcp)`;
//! - [`oracle`] and [`strategies`]: what one node's ruleset must do with a
//!   connection according to the spec, and the proptest generators of
//!   clusters, used by the property tests and the fuzz targets;
//! - [`ruleset`] and [`assert_ruleset!`]: a ruleset compared with an nft text
//!   block, object and element order ignored, rule order kept.
//!
//! **Dependencies and the dev-dependency cycle.** The kit depends on
//! `nftpol-ir` and `nftpol-model` (and k8s-openapi, proptest, nix), never on
//! the compiler or anything above it, so the compiler's, the dataplane's and
//! the agent's tests use it without any cycle. `nftpol-ir` and
//! `nftpol-model` may take it as a dev-dependency for their *integration
//! tests* (`tests/*.rs`): those link the same library build the kit links,
//! so `Ruleset` is one type on both sides. Their *unit tests*
//! (`#[cfg(test)]` inside `src/`) must not: there the crate is compiled a
//! second time as the test harness, and its types would differ from the
//! kit's copies (`expected Ruleset, found Ruleset`).
//! `crates/nftpol-ir/tests/render_text.rs` uses the kit across the cycle.

pub mod fixtures;
pub mod netns;
pub mod nft;
pub mod oracle;
pub mod plan;
pub mod ruleset;
pub mod strategies;
