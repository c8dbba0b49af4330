//! The NFLOG prefix of a verdict log: what decided, in at most
//! [`MAX_PREFIX_LEN`] bytes, readable by any NFLOG reader (ulogd2,
//! `tcpdump -i nflog:100`) and mapped back to policies by the agent.
//!
//! ```text
//! nftpol:de:iso:k3v7q2ma        drop, egress, pods isolated by group k3v7q2ma, no rule allowed it
//! nftpol:ai:np:7q2k4mxb:3       accept, ingress, NetworkPolicy 7q2k4mxb, its ingress rule 3
//! nftpol:di:unk                 drop, ingress, unknown pod on this node (fail closed)
//! nftpol:de:adm:m4kq2z7a:0      drop, egress, Admin ClusterNetworkPolicy m4kq2z7a, its egress rule 0
//! ```
//!
//! Fields are `:`-separated so the prefix is one token for log parsers:
//! the tool, verdict (`a` accept, `d` drop, `r` reject) and direction (`i`,
//! `e`) in one field, the tier and reason (`np` a NetworkPolicy rule, `iso`
//! the default deny of isolated pods, `unk` an unknown local pod, `adm` and
//! `bas` a ClusterNetworkPolicy rule of the Admin or Baseline tier), then the
//! id and the rule index. Ids are the hashes in the chain names the same
//! decision lives in (`policy-<id>-ns/name/ingress`, `ingress-group-<id>`,
//! `cnp-<id>-name/ingress`),
//! so `nft list` readers can find them too; they are stable across
//! restarts and nodes, and never carry a name (a policy name can be 253
//! bytes, the prefix is bounded).
//!
//! 64 bytes is the limit of iptables' NFLOG target (`--nflog-prefix`, 64
//! with the NUL), which ulogd2 setups are written for; the kernel's own is
//! 128 (`NF_LOG_PREFIXLEN`). A prefix here is at most 28 bytes.

use std::fmt;

use nftpol_model::cluster_policy::Tier;
use nftpol_model::Direction;

/// The tool name every prefix starts with.
pub const TOOL: &str = "nftpol";
/// The longest prefix this codec writes or reads, NUL excluded.
pub const MAX_PREFIX_LEN: usize = 63;
/// Characters in an id: 8 lowercase base32 characters (40 bits).
pub const ID_LEN: usize = 8;

/// The verdict a logged packet got (or is about to get).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Accepted by a rule.
    Accept,
    /// Dropped.
    Drop,
    /// Rejected (`--deny=reject`).
    Reject,
}

impl Verdict {
    fn code(self) -> char {
        match self {
            Verdict::Accept => 'a',
            Verdict::Drop => 'd',
            Verdict::Reject => 'r',
        }
    }

    /// `accept`, `drop` or `reject`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        }
    }
}

/// A stable id: 8 lowercase base32 characters (`a-z`, `2-7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortId([u8; ID_LEN]);

impl ShortId {
    /// The id, when `text` is 8 lowercase base32 characters.
    pub fn parse(text: &str) -> Option<ShortId> {
        let bytes: [u8; ID_LEN] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(byte))
            .then_some(ShortId(bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // The bytes were checked to be ASCII on construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for ShortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A NetworkPolicy allow rule: the policy's id in this direction and
    /// the rule's index in its `ingress`/`egress` list.
    PolicyRule {
        /// The policy (the hash of its chain's name).
        policy: ShortId,
        /// The rule's index.
        rule: u16,
    },
    /// The default deny of pods isolated by a group of NetworkPolicies that
    /// none of their rules allowed (the hash of the group chain's name).
    Isolated {
        /// The group.
        group: ShortId,
    },
    /// An address in this node's pod CIDRs that no known pod owns.
    UnknownPod,
    /// A ClusterNetworkPolicy rule: the tier, the policy's id in this
    /// direction and the rule's index in its `ingress`/`egress` list.
    ClusterRule {
        /// Admin or Baseline.
        tier: Tier,
        /// The policy (the hash of its chain's name).
        policy: ShortId,
        /// The rule's index.
        rule: u16,
    },
}

/// One decoded prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPrefix {
    /// The verdict.
    pub verdict: Verdict,
    /// The direction.
    pub direction: Direction,
    /// What decided.
    pub subject: Subject,
}

/// Why a prefix is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// It does not start with `nftpol:`: another tool's log.
    #[error("not an nftpol prefix")]
    Foreign,
    /// It starts with `nftpol:` but does not decode.
    #[error("malformed nftpol prefix: {0}")]
    Malformed(&'static str),
}

impl fmt::Display for LogPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = self.verdict.code();
        let direction = match self.direction {
            Direction::Ingress => 'i',
            Direction::Egress => 'e',
        };
        match self.subject {
            Subject::PolicyRule { policy, rule } => {
                write!(f, "{TOOL}:{verdict}{direction}:np:{policy}:{rule}")
            }
            Subject::Isolated { group } => write!(f, "{TOOL}:{verdict}{direction}:iso:{group}"),
            Subject::UnknownPod => write!(f, "{TOOL}:{verdict}{direction}:unk"),
            Subject::ClusterRule { tier, policy, rule } => {
                let code = match tier {
                    Tier::Admin => "adm",
                    Tier::Baseline => "bas",
                };
                write!(f, "{TOOL}:{verdict}{direction}:{code}:{policy}:{rule}")
            }
        }
    }
}

impl LogPrefix {
    /// Decodes a prefix as the kernel hands it over (a trailing NUL, if
    /// any, is ignored).
    pub fn parse(text: &str) -> Result<LogPrefix, PrefixError> {
        let text = text.trim_end_matches('\0');
        let rest = text
            .strip_prefix(TOOL)
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or(PrefixError::Foreign)?;
        if text.len() > MAX_PREFIX_LEN {
            return Err(PrefixError::Malformed("longer than 63 bytes"));
        }
        let mut fields = rest.split(':');
        let head = fields.next().unwrap_or_default().as_bytes();
        let (verdict, direction) = match head {
            [verdict, direction] => (
                match verdict {
                    b'a' => Verdict::Accept,
                    b'd' => Verdict::Drop,
                    b'r' => Verdict::Reject,
                    _ => return Err(PrefixError::Malformed("unknown verdict")),
                },
                match direction {
                    b'i' => Direction::Ingress,
                    b'e' => Direction::Egress,
                    _ => return Err(PrefixError::Malformed("unknown direction")),
                },
            ),
            _ => return Err(PrefixError::Malformed("verdict and direction")),
        };
        let id = |field: Option<&str>| {
            field
                .and_then(ShortId::parse)
                .ok_or(PrefixError::Malformed("id"))
        };
        let rule_index = |field: Option<&str>| {
            field
                .filter(|text| {
                    !text.is_empty()
                        && text.bytes().all(|byte| byte.is_ascii_digit())
                        && (text.len() == 1 || !text.starts_with('0'))
                })
                .and_then(|text| text.parse::<u16>().ok())
                .ok_or(PrefixError::Malformed("rule index"))
        };
        let subject = match fields.next() {
            Some("np") => {
                let policy = id(fields.next())?;
                let rule = rule_index(fields.next())?;
                Subject::PolicyRule { policy, rule }
            }
            Some(code @ ("adm" | "bas")) => {
                let tier = if code == "adm" {
                    Tier::Admin
                } else {
                    Tier::Baseline
                };
                let policy = id(fields.next())?;
                let rule = rule_index(fields.next())?;
                Subject::ClusterRule { tier, policy, rule }
            }
            Some("iso") => Subject::Isolated {
                group: id(fields.next())?,
            },
            Some("unk") => Subject::UnknownPod,
            _ => return Err(PrefixError::Malformed("unknown tier")),
        };
        if fields.next().is_some() {
            return Err(PrefixError::Malformed("trailing fields"));
        }
        Ok(LogPrefix {
            verdict,
            direction,
            subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ShortId {
        ShortId::parse(text).expect("a valid id")
    }

    #[test]
    fn prefixes_round_trip_and_fit_nflog() {
        let mut all = Vec::new();
        for verdict in [Verdict::Accept, Verdict::Drop, Verdict::Reject] {
            for direction in [Direction::Ingress, Direction::Egress] {
                for subject in [
                    Subject::PolicyRule {
                        policy: id("7q2k4mxb"),
                        rule: 0,
                    },
                    Subject::PolicyRule {
                        policy: id("zzzzzzzz"),
                        rule: u16::MAX,
                    },
                    Subject::Isolated {
                        group: id("abcdefg2"),
                    },
                    Subject::UnknownPod,
                    Subject::ClusterRule {
                        tier: Tier::Admin,
                        policy: id("m4kq2z7a"),
                        rule: 0,
                    },
                    Subject::ClusterRule {
                        tier: Tier::Baseline,
                        policy: id("zzzzzzzz"),
                        rule: u16::MAX,
                    },
                ] {
                    all.push(LogPrefix {
                        verdict,
                        direction,
                        subject,
                    });
                }
            }
        }
        for prefix in all {
            let text = prefix.to_string();
            assert!(text.len() <= MAX_PREFIX_LEN, "{text}");
            assert_eq!(LogPrefix::parse(&text), Ok(prefix), "{text}");
            assert_eq!(LogPrefix::parse(&format!("{text}\0")), Ok(prefix), "{text}");
        }
        assert_eq!(
            LogPrefix {
                verdict: Verdict::Drop,
                direction: Direction::Egress,
                subject: Subject::Isolated {
                    group: id("k3v7q2ma")
                },
            }
            .to_string(),
            "nftpol:de:iso:k3v7q2ma"
        );
    }

    #[test]
    fn foreign_and_malformed_prefixes_are_told_apart() {
        let cases = [
            ("another tool", "IN=eth0 ", PrefixError::Foreign),
            ("empty", "", PrefixError::Foreign),
            ("tool without colon", "nftpolx", PrefixError::Foreign),
            (
                "no fields",
                "nftpol:",
                PrefixError::Malformed("verdict and direction"),
            ),
            (
                "bad verdict",
                "nftpol:xe:unk",
                PrefixError::Malformed("unknown verdict"),
            ),
            (
                "bad direction",
                "nftpol:dx:unk",
                PrefixError::Malformed("unknown direction"),
            ),
            (
                "bad tier",
                "nftpol:de:anp",
                PrefixError::Malformed("unknown tier"),
            ),
            (
                "short id",
                "nftpol:de:iso:abc",
                PrefixError::Malformed("id"),
            ),
            (
                "upper-case id",
                "nftpol:de:iso:ABCDEFGH",
                PrefixError::Malformed("id"),
            ),
            (
                "no rule",
                "nftpol:ai:np:abcdefgh",
                PrefixError::Malformed("rule index"),
            ),
            (
                "leading zero",
                "nftpol:ai:np:abcdefgh:01",
                PrefixError::Malformed("rule index"),
            ),
            (
                "rule too big",
                "nftpol:ai:np:abcdefgh:65536",
                PrefixError::Malformed("rule index"),
            ),
            (
                "trailing",
                "nftpol:de:unk:x",
                PrefixError::Malformed("trailing fields"),
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(LogPrefix::parse(text), Err(want), "{name}");
        }
    }
}
