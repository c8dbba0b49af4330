//! Arbitrary annotation values → the verdict-log limit parser
//! (`nftpol_model::log_limit`). On every input: no panic; the limit is
//! always within the bounds the kernel's token arithmetic takes; a value
//! that parses reads back the same once printed; a malformed value is
//! reported naming the policy and the annotation, never silently ignored.
//!
//! Input: the bytes split at the first NUL into the rate and the burst
//! value (lossy UTF-8), each set under nftpol's key or kube-router's alias
//! as the first byte says.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use nftpol_model::log_limit::{
    parse_burst, parse_rate, LogLimit, KUBE_ROUTER_LOG_LIMIT, KUBE_ROUTER_LOG_LIMIT_BURST,
    LOG_LIMIT, LOG_LIMIT_BURST, MAX_BURST, MAX_RATE,
};
use nftpol_model::PolicyId;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (rate, burst) = text.split_once('\0').unwrap_or((&text, ""));
    let mut annotations = BTreeMap::new();
    let rate_key = if selector & 1 == 0 { LOG_LIMIT } else { KUBE_ROUTER_LOG_LIMIT };
    let burst_key = if selector & 2 == 0 { LOG_LIMIT_BURST } else { KUBE_ROUTER_LOG_LIMIT_BURST };
    annotations.insert(rate_key.to_owned(), rate.to_owned());
    if selector & 4 == 0 {
        annotations.insert(burst_key.to_owned(), burst.to_owned());
    }
    let policy = PolicyId {
        namespace: "x".to_owned(),
        name: "p".to_owned(),
    };
    let mut errors = Vec::new();
    let limit = LogLimit::from_annotations(Some(&annotations), &policy, &mut errors);
    assert!((1..=MAX_RATE).contains(&limit.rate), "{limit:?}");
    assert!((1..=MAX_BURST).contains(&limit.burst), "{limit:?}");
    assert!(errors.iter().all(|error| error.object == "x/p"));
    let parsed_rate = parse_rate(rate);
    let parsed_burst = (selector & 4 == 0).then(|| parse_burst(burst));
    let failures = usize::from(parsed_rate.is_err())
        + usize::from(matches!(parsed_burst, Some(Err(_))));
    assert_eq!(errors.len(), failures, "{errors:?}");
    if let Ok((value, period)) = parsed_rate {
        assert_eq!((limit.rate, limit.period), (value, period));
        let printed = format!("{value}/{}", period_name(period.seconds()));
        assert_eq!(parse_rate(&printed), Ok((value, period)), "{printed}");
    }
    if let Some(Ok(value)) = parsed_burst {
        assert_eq!(limit.burst, value);
        assert_eq!(parse_burst(&value.to_string()), Ok(value));
    }
});

fn period_name(seconds: u64) -> &'static str {
    match seconds {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        _ => "day",
    }
}
