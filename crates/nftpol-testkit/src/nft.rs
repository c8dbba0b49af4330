//! `nft -c -f` of a rendering, in a throwaway network namespace.
//!
//! `unshare --net nft -c -f -`: the namespace is the `nft` process's own and
//! disappears with it, so a check can neither see nor change the host's
//! ruleset and leaves nothing behind, even when killed. Used by the
//! edge-input table, the scenario rendering check and the fuzz targets.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Why an `nft -c` check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum NftCheck {
    /// `unshare --net nft` could not run here (no root, no util-linux, no
    /// nftables).
    #[error(
        "cannot run `unshare --net nft -c` (install util-linux and nftables; needs root): {0}"
    )]
    Unavailable(String),
    /// nft ran and rejected the text.
    #[error("nft -c rejects the text: {0}")]
    Rejected(String),
}

/// Runs `nft -c -f -` on `text` in a throwaway network namespace.
pub fn check(text: &str) -> Result<(), NftCheck> {
    let unavailable = |error: std::io::Error| NftCheck::Unavailable(error.to_string());
    let mut child = Command::new("unshare")
        .args(["--net", "nft", "-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(unavailable)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(unavailable)?;
    }
    let output = child.wait_with_output().map_err(unavailable)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(())
    } else if stderr.contains("unshare:") || stderr.contains("Operation not permitted") {
        Err(NftCheck::Unavailable(stderr))
    } else {
        Err(NftCheck::Rejected(stderr))
    }
}
