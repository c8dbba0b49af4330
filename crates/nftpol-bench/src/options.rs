//! The compile options the measurements compile with: those `nftpol agent`
//! passes to the compiler, so a measured ruleset is the one the agent
//! installs.

use nftpol_ruleset::compile::CompileOptions;
use nftpol_ruleset::rejudge::Rejudge;
use nftpol_ruleset::verdict_log::{VerdictLogMode, VerdictLogOptions};

/// What `nftpol agent` compiles with when given no flags: established flows
/// re-judged, denies logged. Its isolating groups' chains end in five rules
/// instead of one (two original-destination updates, the log, the
/// re-judging mark, the drop): at 10,000 policies, 86,000 rules and a
/// 42 MB first batch instead of 44,000 and 17 MB.
pub fn agent_defaults() -> CompileOptions {
    agent_with(true, true)
}

/// The compile options `nftpol agent --rejudge-established=R
/// --verdict-log=deny|off` passes to the compiler (default mark bits,
/// NFLOG group and deny action).
pub fn agent_with(rejudge: bool, verdict_log_deny: bool) -> CompileOptions {
    CompileOptions {
        rejudge: rejudge.then(Rejudge::default),
        verdict_log: VerdictLogOptions {
            mode: if verdict_log_deny {
                VerdictLogMode::Deny
            } else {
                VerdictLogMode::Off
            },
            ..VerdictLogOptions::default()
        },
        ..CompileOptions::default()
    }
}
