//! Whether the kernel's table equals the desired IR, and how it differs.

use std::fmt;

use nftpol_ir::Ruleset;

use crate::error::{ElementText, ReadError};
use crate::Dataplane;

/// How the observed table differs from the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Table `inet nftpol` does not exist.
    TableMissing,
    /// A desired chain is absent.
    ChainMissing(String),
    /// A chain exists that is not desired.
    ChainUnexpected(String),
    /// A chain's hook, comment or rules differ.
    ChainDiffers(String),
    /// A desired set is absent.
    SetMissing(String),
    /// A set exists that is not desired.
    SetUnexpected(String),
    /// A set's type, flags or comment differ.
    SetDiffers(String),
    /// A desired element is absent.
    ElementMissing {
        /// The set.
        set: String,
        /// The element in nft notation.
        element: String,
    },
    /// An element is present that is not desired.
    ElementUnexpected {
        /// The set.
        set: String,
        /// The element in nft notation.
        element: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TableMissing => write!(f, "table inet nftpol is missing"),
            Self::ChainMissing(name) => write!(f, "chain {name:?} is missing"),
            Self::ChainUnexpected(name) => write!(f, "chain {name:?} is not desired"),
            Self::ChainDiffers(name) => write!(f, "chain {name:?} differs"),
            Self::SetMissing(name) => write!(f, "set {name:?} is missing"),
            Self::SetUnexpected(name) => write!(f, "set {name:?} is not desired"),
            Self::SetDiffers(name) => write!(f, "set {name:?} differs in type, flags or comment"),
            Self::ElementMissing { set, element } => write!(f, "set {set:?} lacks {element}"),
            Self::ElementUnexpected { set, element } => {
                write!(f, "set {set:?} holds {element}, not desired")
            }
        }
    }
}

/// Reads the table and lists every difference from `desired`, in name order
/// (empty: the kernel holds exactly `desired`).
pub fn verify(
    dataplane: &mut impl Dataplane,
    desired: &Ruleset,
) -> Result<Vec<Difference>, ReadError> {
    let Some(observed) = dataplane.read()? else {
        return Ok(vec![Difference::TableMissing]);
    };
    Ok(differences(&observed, desired))
}

/// Differences between two IRs, in name order.
pub fn differences(observed: &Ruleset, desired: &Ruleset) -> Vec<Difference> {
    let mut found = Vec::new();
    for (name, chain) in &desired.chains {
        match observed.chains.get(name) {
            None => found.push(Difference::ChainMissing(name.clone())),
            Some(was) if was != chain => found.push(Difference::ChainDiffers(name.clone())),
            Some(_) => {}
        }
    }
    found.extend(
        observed
            .chains
            .keys()
            .filter(|name| !desired.chains.contains_key(*name))
            .cloned()
            .map(Difference::ChainUnexpected),
    );
    for (name, set) in &desired.sets {
        let Some(was) = observed.sets.get(name) else {
            found.push(Difference::SetMissing(name.clone()));
            continue;
        };
        if was.shape() != set.shape() {
            found.push(Difference::SetDiffers(name.clone()));
            continue;
        }
        found.extend(set.elements.difference(&was.elements).map(|element| {
            Difference::ElementMissing {
                set: name.clone(),
                element: ElementText(element).to_string(),
            }
        }));
        found.extend(was.elements.difference(&set.elements).map(|element| {
            Difference::ElementUnexpected {
                set: name.clone(),
                element: ElementText(element).to_string(),
            }
        }));
    }
    found.extend(
        observed
            .sets
            .keys()
            .filter(|name| !desired.sets.contains_key(*name))
            .cloned()
            .map(Difference::SetUnexpected),
    );
    found
}
