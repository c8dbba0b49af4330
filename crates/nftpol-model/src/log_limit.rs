//! The rate at which a policy's verdict logs reach NFLOG, from its
//! annotations.
//!
//! kube-router logs dropped packets to NFLOG at `10/minute` burst `10` per
//! policy, set by `kube-router.io/netpol-nflog-limit` and
//! `kube-router.io/netpol-nflog-limit-burst`; nftpol reads its own
//! `nftpol.io/log-limit` and `nftpol.io/log-limit-burst` and takes
//! kube-router's two as aliases, so clusters moving off kube-router keep
//! their settings (nftpol's own key wins when both are set). A malformed
//! value is reported naming the policy and the annotation, and the default
//! applies: logging settings never change what a policy enforces.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ModelError;
use crate::policy::PolicyId;

/// `nftpol.io/log-limit`: `RATE/UNIT`, e.g. `10/minute`.
pub const LOG_LIMIT: &str = "nftpol.io/log-limit";
/// `nftpol.io/log-limit-burst`: packets logged at once before the rate applies.
pub const LOG_LIMIT_BURST: &str = "nftpol.io/log-limit-burst";
/// kube-router's alias of [`LOG_LIMIT`].
pub const KUBE_ROUTER_LOG_LIMIT: &str = "kube-router.io/netpol-nflog-limit";
/// kube-router's alias of [`LOG_LIMIT_BURST`].
pub const KUBE_ROUTER_LOG_LIMIT_BURST: &str = "kube-router.io/netpol-nflog-limit-burst";
/// Every annotation this module reads: the only ones the agent keeps.
pub const ANNOTATIONS: [&str; 4] = [
    LOG_LIMIT,
    LOG_LIMIT_BURST,
    KUBE_ROUTER_LOG_LIMIT,
    KUBE_ROUTER_LOG_LIMIT_BURST,
];

/// The largest rate accepted per unit: far above any useful log rate, and
/// small enough that the kernel's token arithmetic (`unit / rate * burst`
/// in nanoseconds) never overflows.
pub const MAX_RATE: u32 = 1_000_000;
/// The largest burst accepted.
pub const MAX_BURST: u32 = 100_000;

/// The time unit of a log rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RatePeriod {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl RatePeriod {
    /// The period in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            RatePeriod::Second => 1,
            RatePeriod::Minute => 60,
            RatePeriod::Hour => 3600,
            RatePeriod::Day => 86_400,
        }
    }

    fn name(self) -> &'static str {
        match self {
            RatePeriod::Second => "second",
            RatePeriod::Minute => "minute",
            RatePeriod::Hour => "hour",
            RatePeriod::Day => "day",
        }
    }
}

/// How many of a policy's verdict logs the kernel passes: `rate` per
/// `period`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogLimit {
    /// Packets per period, 1 ..= [`MAX_RATE`].
    pub rate: u32,
    /// The period of `rate`.
    pub period: RatePeriod,
    /// Packets at once, 1 ..= [`MAX_BURST`].
    pub burst: u32,
}

impl Default for LogLimit {
    /// kube-router's default: `10/minute`, burst `10`.
    fn default() -> Self {
        Self {
            rate: 10,
            period: RatePeriod::Minute,
            burst: 10,
        }
    }
}

impl fmt::Display for LogLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} burst {}",
            self.rate,
            self.period.name(),
            self.burst
        )
    }
}

impl LogLimit {
    /// Whether `self` lets fewer packets through over time than `other`
    /// (then, at equal rates, the smaller burst).
    pub fn is_stricter_than(&self, other: &LogLimit) -> bool {
        // rate / period compared without division: a/p < b/q ⇔ a·q < b·p.
        let mine = u128::from(self.rate) * u128::from(other.period.seconds());
        let theirs = u128::from(other.rate) * u128::from(self.period.seconds());
        mine < theirs || (mine == theirs && self.burst < other.burst)
    }

    /// The limit of a policy, from its annotations; a malformed value is
    /// reported in `errors` and its default applies.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
        policy: &PolicyId,
        errors: &mut Vec<ModelError>,
    ) -> LogLimit {
        let mut limit = LogLimit::default();
        let Some(annotations) = annotations else {
            return limit;
        };
        let pick = |own: &'static str, alias: &'static str| {
            annotations
                .get(own)
                .map(|value| (own, value))
                .or_else(|| annotations.get(alias).map(|value| (alias, value)))
        };
        let mut report = |key: &str, problem: String| {
            errors.push(ModelError {
                kind: "NetworkPolicy",
                object: policy.to_string(),
                field: format!("metadata.annotations[{key}]"),
                problem: format!("{problem}; the default {} applies", LogLimit::default()),
            });
        };
        if let Some((key, value)) = pick(LOG_LIMIT, KUBE_ROUTER_LOG_LIMIT) {
            match parse_rate(value) {
                Ok((rate, period)) => {
                    limit.rate = rate;
                    limit.period = period;
                }
                Err(problem) => report(key, problem),
            }
        }
        if let Some((key, value)) = pick(LOG_LIMIT_BURST, KUBE_ROUTER_LOG_LIMIT_BURST) {
            match parse_burst(value) {
                Ok(burst) => limit.burst = burst,
                Err(problem) => report(key, problem),
            }
        }
        limit
    }
}

/// Parses `RATE/UNIT` as iptables' `--limit` spells it: UNIT is `second`,
/// `minute`, `hour` or `day`, or iptables' abbreviations (`s`, `sec`, `m`,
/// `min`, `h`, `d`); surrounding blanks are ignored.
pub fn parse_rate(text: &str) -> Result<(u32, RatePeriod), String> {
    let (rate, unit) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not RATE/UNIT (e.g. 10/minute)"))?;
    let rate = parse_count(rate, MAX_RATE, "rate")?;
    let period = match unit.trim() {
        "s" | "sec" | "second" => RatePeriod::Second,
        "m" | "min" | "minute" => RatePeriod::Minute,
        "h" | "hour" => RatePeriod::Hour,
        "d" | "day" => RatePeriod::Day,
        other => {
            return Err(format!(
                "unknown unit {other:?} (second, minute, hour or day)"
            ))
        }
    };
    Ok((rate, period))
}

/// Parses a burst: a whole number of packets, 1 ..= [`MAX_BURST`].
pub fn parse_burst(text: &str) -> Result<u32, String> {
    parse_count(text, MAX_BURST, "burst")
}

fn parse_count(text: &str, max: u32, what: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a whole number"));
    }
    match text.parse::<u32>() {
        Ok(value) if (1..=max).contains(&value) => Ok(value),
        _ => Err(format!("{what} {text} is not within 1..={max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PolicyId {
        PolicyId {
            namespace: "shop".to_owned(),
            name: "db".to_owned(),
        }
    }

    fn limit(rate: u32, period: RatePeriod, burst: u32) -> LogLimit {
        LogLimit {
            rate,
            period,
            burst,
        }
    }

    #[test]
    fn annotations_set_the_limit_and_malformed_ones_keep_the_default() {
        /// Name, annotations, the limit wanted, the annotations reported.
        type Case = (
            &'static str,
            &'static [(&'static str, &'static str)],
            LogLimit,
            &'static [&'static str],
        );
        let cases: [Case; 9] = [
            ("none", &[], LogLimit::default(), &[]),
            (
                "nftpol keys",
                &[(LOG_LIMIT, "5/second"), (LOG_LIMIT_BURST, "20")],
                limit(5, RatePeriod::Second, 20),
                &[],
            ),
            (
                "kube-router aliases",
                &[
                    (KUBE_ROUTER_LOG_LIMIT, "2/h"),
                    (KUBE_ROUTER_LOG_LIMIT_BURST, " 3 "),
                ],
                limit(2, RatePeriod::Hour, 3),
                &[],
            ),
            (
                "own key wins over the alias",
                &[(LOG_LIMIT, "1/day"), (KUBE_ROUTER_LOG_LIMIT, "9/second")],
                limit(1, RatePeriod::Day, 10),
                &[],
            ),
            (
                "bad unit",
                &[(LOG_LIMIT, "10/fortnight"), (LOG_LIMIT_BURST, "4")],
                limit(10, RatePeriod::Minute, 4),
                &[LOG_LIMIT],
            ),
            (
                "zero rate",
                &[(KUBE_ROUTER_LOG_LIMIT, "0/minute")],
                LogLimit::default(),
                &[KUBE_ROUTER_LOG_LIMIT],
            ),
            (
                "no unit",
                &[(LOG_LIMIT, "10")],
                LogLimit::default(),
                &[LOG_LIMIT],
            ),
            (
                "negative burst",
                &[(LOG_LIMIT_BURST, "-1")],
                LogLimit::default(),
                &[LOG_LIMIT_BURST],
            ),
            (
                "huge values",
                &[(LOG_LIMIT, "99999999999/s"), (LOG_LIMIT_BURST, "100001")],
                LogLimit::default(),
                &[LOG_LIMIT, LOG_LIMIT_BURST],
            ),
        ];
        for (name, annotations, want, bad) in cases {
            let annotations: BTreeMap<String, String> = annotations
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect();
            let mut errors = Vec::new();
            let got = LogLimit::from_annotations(Some(&annotations), &id(), &mut errors);
            assert_eq!(got, want, "{name}");
            let fields: Vec<String> = errors.iter().map(|error| error.field.clone()).collect();
            let want_fields: Vec<String> = bad
                .iter()
                .map(|key| format!("metadata.annotations[{key}]"))
                .collect();
            assert_eq!(fields, want_fields, "{name}");
            assert!(
                errors.iter().all(|error| error.object == "shop/db"),
                "{name}"
            );
        }
    }

    #[test]
    fn stricter_compares_rates_across_units() {
        let per_minute = limit(10, RatePeriod::Minute, 10);
        assert!(limit(1, RatePeriod::Second, 10).is_stricter_than(&limit(
            61,
            RatePeriod::Minute,
            1
        )));
        assert!(!limit(1, RatePeriod::Second, 10).is_stricter_than(&per_minute));
        assert!(limit(10, RatePeriod::Minute, 5).is_stricter_than(&per_minute));
        assert!(!per_minute.is_stricter_than(&per_minute));
    }
}
