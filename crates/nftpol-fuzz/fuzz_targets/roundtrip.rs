//! Compiled IR → the netlink crate's encoder (`BatchWriter`) → the dump the
//! kernel would answer for the table that batch creates (`dump_form`: dump
//! framing, handles added, set ids removed, elements re-packed and
//! re-ordered as the fuzz input says) → the decoder (`decode_dump`). On
//! every input the decoded IR equals the compiled one, exactly: the encoder
//! writes every IR field into some attribute (comments into userdata,
//! open-ended intervals into an element flag), so nothing is lost.
//!
//! The IR comes from a [`Scenario`] as in the `dataplane` target (the
//! cluster, and its corrupted variant when the input asks for one).

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nftpol_fuzz::dump_form::{dump_of_batch, Layout};
use nftpol_fuzz::{Scenario, NODE};
use nftpol_ir::diff::diff;
use nftpol_ir::render::render;
use nftpol_ir::{Ruleset, TABLE_NAME};
use nftpol_model::resolve;
use nftpol_netlink::batch::BatchWriter;
use nftpol_netlink::decode_dump;
use nftpol_ruleset::compile::{compile, CompileOptions};

/// A scenario and how the kernel lays out its dump.
#[derive(Debug, Arbitrary)]
struct Input {
    /// Reply messages per datagram.
    messages_per_datagram: u8,
    /// Element nests per reply (0: as many as fit).
    elements_per_message: u8,
    /// Bit 0: walk elements backwards; the rest: rotation.
    order: u8,
    scenario: Scenario,
}

impl Input {
    fn layout(&self) -> Layout {
        Layout {
            messages_per_datagram: usize::from(self.messages_per_datagram % 8),
            elements_per_message: match self.elements_per_message {
                0 => usize::MAX,
                n => usize::from(n),
            },
            reverse_elements: self.order & 1 != 0,
            rotate: usize::from(self.order >> 1),
        }
    }
}

fn check_round_trip(ruleset: &Ruleset, layout: Layout) {
    let mut writer = BatchWriter::new(TABLE_NAME, 1);
    writer
        .push_diff(&diff(None, ruleset), &BTreeMap::new())
        .unwrap_or_else(|error| panic!("a compiled IR must encode: {error}"));
    let dump = dump_of_batch(&writer.finish().to_bytes(), layout);
    match decode_dump(&dump) {
        Ok(decoded) => assert_eq!(
            &decoded,
            ruleset,
            "the decoded dump differs from the encoded IR ({layout:?})\nencoded:\n{}\ndecoded:\n{}",
            render(ruleset),
            render(&decoded)
        ),
        Err(error) => panic!(
            "the dump of an encoded IR does not decode ({layout:?}): {error}\n{}",
            render(ruleset)
        ),
    }
}

fuzz_target!(|input: Input| {
    let cluster = input.scenario.cluster();
    let options = CompileOptions::default();
    let layout = input.layout();
    check_round_trip(&compile(&resolve(&cluster, NODE), options).ruleset, layout);
    if let Some((corrupted, _, _)) = input.scenario.corrupted(&cluster) {
        check_round_trip(
            &compile(&resolve(&corrupted, NODE), options).ruleset,
            layout,
        );
    }
});
