//! What the verdict log reader takes from the kernel: arbitrary bytes as an
//! NFLOG datagram (`nftpol_netlink::nflog::parse_packets`), and arbitrary
//! text as a log prefix (`nftpol_ruleset::log_prefix`). On every input: no
//! panic; a prefix that decodes is one the codec writes (it prints back to
//! the same text, within 63 bytes, starting `nftpol:`); whatever prefix a
//! decoded packet carries goes through the same check.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nftpol_netlink::nflog::parse_packets;
use nftpol_ruleset::log_prefix::{LogPrefix, MAX_PREFIX_LEN};

fn check_prefix(text: &str) {
    if let Ok(prefix) = LogPrefix::parse(text) {
        let printed = prefix.to_string();
        assert!(printed.len() <= MAX_PREFIX_LEN, "{printed}");
        assert!(printed.starts_with("nftpol:"), "{printed}");
        assert_eq!(LogPrefix::parse(&printed), Ok(prefix), "{printed}");
        assert_eq!(printed, text.trim_end_matches('\0'), "one spelling per prefix");
    }
}

fuzz_target!(|data: &[u8]| {
    check_prefix(&String::from_utf8_lossy(data));
    if let Ok(packets) = parse_packets(data) {
        for packet in packets {
            if let Some(prefix) = &packet.prefix {
                check_prefix(prefix);
            }
        }
    }
});
