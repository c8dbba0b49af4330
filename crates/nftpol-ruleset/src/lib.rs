//! nftpol-ruleset: the per-node policy model → the nftables ruleset IR for
//! table `inet nftpol`; diff between two IRs; rendering to `nft` syntax; and
//! an interpreter that walks a packet through the IR as the kernel would.
//!
//! Pure: no I/O, no clock, no kernel.

pub mod compile;
pub mod diff;
pub mod interpret;
pub mod ir;
pub mod names;
pub mod render;
