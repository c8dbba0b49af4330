//! nftpol-ir: the ruleset of table `inet nftpol` as plain data, and what
//! every layer does with it.
//!
//! In: nothing but values. Out: [`Ruleset`]s, the [`diff::Diff`] between two
//! of them, [`Ruleset::apply`] of a diff (the one applier: the fake
//! dataplane, the kernel dataplane's shape cache and the incremental pod path
//! all patch a ruleset through it), the `nft` text of a ruleset
//! ([`render`]), and a packet walked through a ruleset as the kernel would
//! ([`interpret`]).
//!
//! It knows nothing of Kubernetes, in code and in the build graph: the
//! compiler (`nftpol-ruleset`) produces these values from the policy model,
//! and the dataplane (`nftpol-netlink`) depends on this crate alone.
//!
//! Pure: no I/O, no clock, no kernel.

pub mod apply;
pub mod diff;
pub mod interpret;
mod object;
pub mod render;
mod ruleset;

pub use apply::Conflict;
pub use object::{ElementText, Object};
pub use ruleset::{
    Action, BaseChain, Chain, ChainPolicy, CtDirection, CtState, DynamicMap, Element, Field, Hook,
    KeyType, Log, Match, RateLimit, RateUnit, Rule, Ruleset, Set, SetUpdate, Value, Verdict,
    TABLE_FAMILY, TABLE_NAME,
};
