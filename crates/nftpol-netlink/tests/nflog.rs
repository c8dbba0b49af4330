//! NFLOG in a fresh network namespace: a `log group` rule's packets reach
//! the socket with their prefix and conntrack tuple, and a second reader of
//! the group is told it is held.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::run;
use nftpol_netlink::nflog::{NflogError, NflogSocket};
use nftpol_testkit::netns::in_fresh_netns;

const GROUP: u16 = 7;

#[test]
fn logged_packets_arrive_with_prefix_and_a_second_reader_is_refused() {
    in_fresh_netns(|| {
        let mut socket = NflogSocket::bind(GROUP, 1 << 20, Duration::from_millis(100))
            .expect("binding the NFLOG group");
        assert!(
            matches!(
                NflogSocket::bind(GROUP, 1 << 20, Duration::from_millis(100)),
                Err(NflogError::GroupBusy { group: GROUP })
            ),
            "a second bind of the group must be refused"
        );
        run(
            "nft",
            &["-f", "-"],
            Some(concat!(
                "table inet t {\n",
                "\tchain out {\n",
                "\t\ttype filter hook output priority 0;\n",
                "\t\tudp dport 9999 log prefix \"nftpol:de:unk\" group 7\n",
                "\t}\n",
                "}\n",
            )),
        );
        let sender = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        for _ in 0..3 {
            sender
                .send_to(b"probe", "127.0.0.1:9999")
                .expect("sending a probe");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut packets = Vec::new();
        let mut lost = 0;
        while packets.len() < 3 && Instant::now() < deadline {
            let received = socket.receive().expect("receiving");
            lost += received.lost;
            packets.extend(received.packets);
        }
        assert_eq!(packets.len(), 3, "{packets:?}");
        assert_eq!(lost, 0);
        let numbers: Vec<Option<u32>> = packets.iter().map(|packet| packet.seq).collect();
        assert_eq!(numbers, [Some(0), Some(1), Some(2)]);
        let packet = &packets[0];
        assert_eq!(packet.prefix.as_deref(), Some("nftpol:de:unk"));
        assert_eq!(packet.family, 2);
        assert_eq!(packet.payload.first().map(|byte| byte >> 4), Some(4));
        // Kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT (this CI's) attach
        // no conntrack data.
        if socket.has_conntrack() {
            let tuple = packet.original.expect("a conntrack tuple");
            assert_eq!(tuple.destination_port, Some(9999));
            assert_eq!(tuple.protocol, 17);
        }
    });
}
