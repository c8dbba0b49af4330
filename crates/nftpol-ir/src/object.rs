//! [`Object`]: which object of table `inet nftpol` a change, an error or a
//! conflict concerns, in words a person can read.

use std::fmt;

use crate::{Element, Value};

/// An object of table `inet nftpol`, as named by a change: what a netlink
/// message was built from, what a [`crate::Conflict`] concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// The transaction as a whole (the netlink batch framing), or a failure
    /// not tied to one change.
    Batch,
    /// Table `inet nftpol` (or the probe table).
    Table,
    /// A chain.
    Chain(String),
    /// A rule, identified by its chain and its index among the rules of the change list.
    Rule {
        /// The chain.
        chain: String,
        /// The rule's comment, which names its policy.
        comment: Option<String>,
    },
    /// A set or map as a whole.
    Set(String),
    /// One element of a set.
    Element {
        /// The set.
        set: String,
        /// The element (boxed: errors stay small).
        element: Box<Element>,
    },
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Batch => write!(f, "the batch"),
            Self::Table => write!(f, "table inet nftpol"),
            Self::Chain(name) => write!(f, "chain {name:?}"),
            Self::Rule {
                chain,
                comment: Some(comment),
            } => write!(f, "rule {comment:?} in chain {chain:?}"),
            Self::Rule {
                chain,
                comment: None,
            } => write!(f, "a rule in chain {chain:?}"),
            Self::Set(name) => write!(f, "set {name:?}"),
            Self::Element { set, element } => {
                write!(f, "element {} of set {set:?}", ElementText(element))
            }
        }
    }
}

/// An element in nft notation (`10.0.0.0-10.0.0.255 . 6 . 80`).
pub struct ElementText<'a>(pub &'a Element);

impl fmt::Display for ElementText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (start, end)) in self.0.start().iter().zip(self.0.end()).enumerate() {
            if index > 0 {
                write!(f, " . ")?;
            }
            write!(f, "{}", ValueText(*start))?;
            if start != end {
                write!(f, "-{}", ValueText(*end))?;
            }
        }
        if let Some(verdict) = self.0.verdict() {
            write!(f, " : {verdict:?}")?;
        }
        Ok(())
    }
}

struct ValueText(Value);

impl fmt::Display for ValueText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Ipv4(addr) => write!(f, "{addr}"),
            Value::Ipv6(addr) => write!(f, "{addr}"),
            Value::Proto(proto) => write!(f, "{proto}"),
            Value::Port(port) => write!(f, "{port}"),
        }
    }
}
