//! IR → nf_tables batch encoding (the netlink crate's `BatchWriter`) and the
//! `FakeDataplane`, which applies a batch only if the kernel would. On every
//! input: no panic; every compiled IR encodes, its batch is well framed
//! (netlink headers tile the buffer, one message per change plus the two
//! batch markers), the fake accepts it from an empty table and as a diff
//! from another compiled IR, and ends equal to the IR.
//!
//! Decoding the batch back is the `roundtrip` target; arbitrary dump bytes
//! are `dump_bytes`.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use nftpol_fuzz::{Scenario, NODE};
use nftpol_ir::diff::diff;
use nftpol_ir::TABLE_NAME;
use nftpol_model::resolve;
use nftpol_netlink::batch::BatchWriter;
use nftpol_netlink::{Dataplane, FakeDataplane};
use nftpol_ruleset::compile::{compile, CompileOptions};

/// Netlink message headers (`nlmsghdr`: u32 length, u16 type, u16 flags,
/// u32 seq, u32 pid) tile `bytes`; returns the number of messages.
fn frame_count(bytes: &[u8]) -> usize {
    let mut offset = 0;
    let mut count = 0;
    while offset < bytes.len() {
        let header = bytes.get(offset..offset + 4).expect("a whole length field");
        let length = u32::from_ne_bytes(header.try_into().expect("four bytes")) as usize;
        assert!(length >= 16, "message {count} shorter than its header");
        let aligned = length.div_ceil(4) * 4;
        assert!(
            offset + length <= bytes.len(),
            "message {count} overruns the batch"
        );
        offset += aligned;
        count += 1;
    }
    assert_eq!(offset, bytes.len(), "messages do not tile the batch");
    count
}

fuzz_target!(|scenario: Scenario| {
    let cluster = scenario.cluster();
    let options = CompileOptions::default();
    let first = compile(&resolve(&cluster, NODE), options).ruleset;
    let second = scenario
        .corrupted(&cluster)
        .map(|(corrupted, _, _)| compile(&resolve(&corrupted, NODE), options).ruleset)
        .unwrap_or_default();

    let changes = diff(None, &first);
    let mut writer = BatchWriter::new(TABLE_NAME, 1);
    writer
        .push_diff(&changes, &BTreeMap::new())
        .unwrap_or_else(|error| panic!("a compiled IR must encode: {error}"));
    let batch = writer.finish();
    assert_eq!(frame_count(&batch.to_bytes()), batch.message_count() + 2);
    assert!(batch.message_count() >= changes.changes.len());

    let mut fake = FakeDataplane::new();
    fake.apply(&changes)
        .unwrap_or_else(|error| panic!("the fake rejects a compiled IR: {error}"));
    assert_eq!(fake.state(), Some(&first));

    fake.apply(&diff(Some(&first), &second))
        .unwrap_or_else(|error| panic!("the fake rejects a diff between compiled IRs: {error}"));
    assert_eq!(fake.state(), Some(&second));
});
