//! Encode → dump → decode: the table our batch creates, read back as the
//! kernel dumps it (see `dump_form`), decodes to the IR that was encoded.
//! No kernel needed; the `roundtrip` fuzz target checks the same property on
//! compiled rulesets.

mod common;
mod dump_form;

use std::collections::BTreeMap;

use common::{fixture, many_v4};
use dump_form::{dump_of_batch, Layout};
use nftpol_ir::diff::diff;
use nftpol_ir::{KeyType, Ruleset, Set, TABLE_NAME};
use nftpol_netlink::batch::{Batch, BatchWriter};
use nftpol_netlink::decode_dump;
use nftpol_netlink::uapi::msg;

fn encode(ruleset: &Ruleset) -> Batch {
    let mut writer = BatchWriter::new(TABLE_NAME, 1);
    writer
        .push_diff(&diff(None, ruleset), &BTreeMap::new())
        .expect("the fixture encodes");
    writer.finish()
}

/// The fixture (base and regular chains, every match and verdict, interval,
/// concatenated and verdict-map sets, an empty set, ranges ending at the
/// maximum address) plus a set of 5000 elements, whose batch needs several
/// element messages of at most `batch::MAX_ELEMENT_LIST` bytes.
fn ruleset() -> Ruleset {
    let mut ruleset = fixture();
    let big = Set {
        name: "many-v4".to_owned(),
        key: vec![KeyType::Ipv4Addr],
        interval: false,
        is_verdict_map: false,
        dynamic: None,
        comment: Some("5000 addresses".to_owned()),
        elements: many_v4(5000),
    };
    ruleset.sets.insert(big.name.clone(), big);
    ruleset
}

#[test]
fn encoded_table_decodes_to_the_same_ir_from_any_dump_layout() {
    let cases = [
        ("one datagram per dump, batch order", Layout::default()),
        (
            "one message per datagram, one element per reply, descending",
            Layout {
                messages_per_datagram: 1,
                elements_per_message: 1,
                reverse_elements: true,
                rotate: 0,
            },
        ),
        (
            "three per datagram, seven elements per reply, rotated",
            Layout {
                messages_per_datagram: 3,
                elements_per_message: 7,
                reverse_elements: false,
                rotate: 5,
            },
        ),
        (
            "packed replies, descending and rotated",
            Layout {
                messages_per_datagram: 2,
                elements_per_message: usize::MAX,
                reverse_elements: true,
                rotate: 1,
            },
        ),
    ];
    let want = ruleset();
    let batch = encode(&want);
    let element_messages = batch
        .origins
        .iter()
        .filter(|origin| origin.kind == msg::NEWSETELEM)
        .count();
    let filled_sets = want.sets.values().filter(|set| !set.elements.is_empty());
    assert!(
        element_messages > filled_sets.count(),
        "the batch must split a set's elements over several messages"
    );
    for (name, layout) in cases {
        let dump = dump_of_batch(&batch.to_bytes(), layout);
        assert_eq!(
            dump.elements.keys().collect::<Vec<_>>(),
            want.sets.keys().collect::<Vec<_>>(),
            "{name}: one element dump per set"
        );
        let got = decode_dump(&dump).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn dump_missing_an_element_reply_decodes_to_different_ir() {
    // The round trip above is not vacuous: losing one reply shows.
    let want = ruleset();
    let mut dump = dump_of_batch(
        &encode(&want).to_bytes(),
        Layout {
            messages_per_datagram: 1,
            elements_per_message: 1,
            ..Layout::default()
        },
    );
    dump.elements
        .get_mut("many-v4")
        .expect("an element dump of many-v4")
        .remove(0);
    let got = decode_dump(&dump).expect("a shorter dump still decodes");
    assert_ne!(got, want);
    assert_eq!(
        got.sets.get("many-v4").map(|set| set.elements.len()),
        Some(4999)
    );
}

/// The `nlmsg_len` of every message in `chunk`, walking it from the start;
/// `None` if a message runs past the chunk's end.
fn message_lengths(chunk: &[u8]) -> Option<Vec<usize>> {
    let mut lengths = Vec::new();
    let mut rest = chunk;
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let padded = (len + 3) & !3;
        if len < 16 || padded > rest.len() {
            return None;
        }
        lengths.push(len);
        rest = &rest[padded..];
    }
    Some(lengths)
}

#[test]
fn a_large_batch_is_chunked_between_messages_and_decodes_the_same() {
    let mut want = ruleset();
    let many = want.sets.get_mut("many-v4").expect("the fixture's big set");
    many.elements = many_v4(200_000);
    let batch = encode(&want);
    assert!(
        batch.chunks.len() > 1,
        "a {} byte batch in one chunk",
        batch.byte_len()
    );
    let mut messages = 0;
    for (index, chunk) in batch.chunks.iter().enumerate() {
        let lengths = message_lengths(chunk)
            .unwrap_or_else(|| panic!("chunk {index} does not end on a message boundary"));
        messages += lengths.len();
    }
    assert_eq!(
        messages,
        batch.message_count() + 2,
        "BEGIN, the messages, END"
    );
    let got = decode_dump(&dump_of_batch(&batch.to_bytes(), Layout::default()))
        .expect("the joined chunks decode");
    assert_eq!(got, want);
}
