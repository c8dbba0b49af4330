//! Errors of applying, reading and probing, each naming the IR object involved.

use std::fmt;

pub use nftpol_ir::{ElementText, Object};

use crate::nla::{AttrTooLarge, WireError};

/// Applying a diff (or deleting the table) failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The IR cannot be expressed as nf_tables messages.
    #[error("cannot encode {object}: {reason}")]
    Encode {
        /// What was being encoded.
        object: Object,
        /// Why it cannot be encoded.
        reason: String,
    },
    /// An attribute would exceed the 64 KiB netlink limit.
    #[error("cannot encode {object}")]
    TooLarge {
        /// What was being encoded.
        object: Object,
        /// The attribute.
        #[source]
        source: AttrTooLarge,
    },
    /// The kernel rejected the batch; the ruleset is unchanged.
    #[error("kernel rejected {object}: {errno}{}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(), if *also_failed > 0 { format!("; {also_failed} later messages failed too") } else { String::new() })]
    Rejected {
        /// The failing message's error number.
        errno: nix::errno::Errno,
        /// The kernel's extended-ack message, if it sent one.
        message: Option<String>,
        /// The IR object the first failing message came from.
        object: Object,
        /// How many later messages of the same batch failed as well.
        also_failed: usize,
    },
    /// Netlink socket I/O failed.
    #[error("netlink I/O failed while {stage}")]
    Io {
        /// What was being done.
        stage: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's reply could not be understood.
    #[error("malformed kernel reply while {stage}")]
    Protocol {
        /// What was being done.
        stage: &'static str,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// The kernel did not confirm the batch.
    #[error("no acknowledgement for the batch")]
    NoAck,
    /// Reading the table's structure, needed to encode the changes, failed.
    #[error("reading the table's structure before encoding the changes")]
    ReadSets(#[source] Box<ReadError>),
}

impl ApplyError {
    /// A closed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Encode { .. } | Self::TooLarge { .. } => "encode",
            Self::Rejected { errno, .. } => match errno {
                nix::errno::Errno::ENOENT => "not_found",
                nix::errno::Errno::EEXIST => "exists",
                nix::errno::Errno::EBUSY => "busy",
                nix::errno::Errno::EINVAL => "invalid",
                nix::errno::Errno::EPERM => "permission",
                _ => "kernel",
            },
            Self::Io { .. } => "io",
            Self::Protocol { .. } | Self::NoAck => "protocol",
            Self::ReadSets(_) => "read",
        }
    }

    /// The kernel's error number, when the kernel rejected the batch.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            Self::Rejected { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The IR object the error is about, if any.
    pub fn object(&self) -> Option<&Object> {
        match self {
            Self::Encode { object, .. }
            | Self::TooLarge { object, .. }
            | Self::Rejected { object, .. } => Some(object),
            _ => None,
        }
    }

    /// Whether something the batch referenced or deleted does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::ENOENT)
    }

    /// Whether something the batch added exists already or overlaps.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::EEXIST)
    }

    /// Whether something the batch deleted is still referenced.
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::EBUSY)
    }
}

/// The kernel's table could not be read back as IR.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Netlink socket I/O failed.
    #[error("netlink I/O failed while {stage}")]
    Io {
        /// What was being done.
        stage: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel answered a request with an error.
    #[error("kernel refused {stage}: {errno}")]
    Kernel {
        /// What was being requested.
        stage: &'static str,
        /// The error number.
        errno: nix::errno::Errno,
    },
    /// The dump could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The table kept changing while it was read.
    #[error("the table changed during every one of {attempts} dumps")]
    Unstable {
        /// Dumps tried.
        attempts: usize,
    },
}

impl ReadError {
    /// A closed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Kernel { .. } => "kernel",
            Self::Decode(_) => "decode",
            Self::Unstable { .. } => "unstable",
        }
    }
}

/// A conntrack flush failed; the entries it was for stay.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// Netlink socket I/O failed.
    #[error("netlink I/O failed while {stage}")]
    Io {
        /// What was being done.
        stage: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the flush (`EOPNOTSUPP`: no ctnetlink, e.g.
    /// `nf_conntrack_netlink` not loaded).
    #[error("kernel refused the conntrack flush: {errno}")]
    Kernel {
        /// The error number.
        errno: nix::errno::Errno,
    },
    /// The kernel's reply could not be understood.
    #[error("malformed kernel reply to the conntrack flush")]
    Protocol(#[source] WireError),
}

impl ConntrackError {
    /// A closed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Kernel { .. } => "kernel",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// A dump holds something this crate does not produce (or malformed bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Malformed netlink framing or attribute.
    #[error("malformed {object}")]
    Wire {
        /// Which object was being decoded (`chain "x"`, `set "y"`, …).
        object: String,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// The dump repeated elements (and so skipped as many): read again.
    #[error("inconsistent element dump of {object}: the set changed shape during the dump")]
    Inconsistent {
        /// Which set.
        object: String,
    },
    /// Well-formed, but not something nftpol writes.
    #[error("unexpected content in {object}: {reason}")]
    Unexpected {
        /// Which object was being decoded.
        object: String,
        /// What is wrong.
        reason: String,
    },
}

impl DecodeError {
    pub(crate) fn wire(object: impl fmt::Display) -> impl FnOnce(WireError) -> Self {
        let object = object.to_string();
        move |source| Self::Wire { object, source }
    }

    pub(crate) fn unexpected(object: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self::Unexpected {
            object: object.to_string(),
            reason: reason.into(),
        }
    }
}

/// The kernel lacks something nftpol needs.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The `NETLINK_NETFILTER` socket could not be opened or configured.
    #[error("cannot open a netfilter netlink socket (is nf_tables/nfnetlink available, and do we have CAP_NET_ADMIN?)")]
    Socket(#[source] std::io::Error),
    /// The probe batch was rejected at the message that needs `feature`.
    #[error("the kernel lacks {feature}")]
    Missing {
        /// The missing feature, in words.
        feature: &'static str,
        /// The kernel's answer.
        #[source]
        source: Box<ApplyError>,
    },
}
