//! nftpol-ruleset: the compiler from the per-node policy model
//! (`nftpol-model`) to the ruleset of table `inet nftpol` (`nftpol-ir`).
//!
//! It owns every design choice of the table's layout: hooks and priorities,
//! the chain layout, which sets exist and how they are shared, and the names
//! of every object it makes.
//!
//! Pure: no I/O, no clock, no kernel.

pub mod catalogue;
pub mod compile;
pub mod log_prefix;
mod names;
pub mod rejudge;
pub mod verdict_log;
mod widening;

pub use catalogue::{MAX_COMMENT_LEN, MAX_NAME_LEN};
