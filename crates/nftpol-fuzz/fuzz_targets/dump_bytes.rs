//! Arbitrary bytes as a kernel dump of table `inet nftpol` → the netlink
//! crate's decoder (`decode_dump`). On every input: no panic, only `Ok` or
//! `Err`. And whatever it accepts is a table nftpol could have written: if
//! the decoded IR encodes, the dump of that encoding (laid out by the
//! kernel's rules, see `dump_form`) decodes to the same IR.
//!
//! Input format, so seeds can be written from real dumps: a sequence of
//! records `[part][length: u16 LE][length bytes]`, where `part % 4` picks
//! the chain, rule, set or element datagrams; an element record's bytes are
//! `[name length: u8][set name][datagram]`. A record longer than what is
//! left takes the rest.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use nftpol_fuzz::dump_form::{dump_of_batch, Layout};
use nftpol_ir::diff::diff;
use nftpol_ir::render::render;
use nftpol_ir::TABLE_NAME;
use nftpol_netlink::batch::BatchWriter;
use nftpol_netlink::{decode_dump, Dump};

/// Takes `n` bytes (or what is left) off the front of `data`.
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

/// The input split into a dump, by the format above.
fn dump_of(mut data: &[u8]) -> Dump {
    let mut dump = Dump::default();
    while let Some((&part, rest)) = data.split_first() {
        data = rest;
        let length = match take(&mut data, 2) {
            [lo, hi] => usize::from(u16::from_le_bytes([*lo, *hi])),
            [lo] => usize::from(*lo),
            _ => 0,
        };
        let mut record = take(&mut data, length);
        match part % 4 {
            0 => dump.chains.push(record.to_vec()),
            1 => dump.rules.push(record.to_vec()),
            2 => dump.sets.push(record.to_vec()),
            _ => {
                let name_length = take(&mut record, 1).first().copied().unwrap_or(0);
                let name = String::from_utf8_lossy(take(&mut record, usize::from(name_length)));
                dump.elements
                    .entry(name.into_owned())
                    .or_default()
                    .push(record.to_vec());
            }
        }
    }
    dump
}

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = decode_dump(&dump_of(data)) else {
        return;
    };
    let mut writer = BatchWriter::new(TABLE_NAME, 1);
    if writer
        .push_diff(&diff(None, &decoded), &BTreeMap::new())
        .is_err()
    {
        // The decoder reads each object on its own; the encoder also checks
        // that they fit together (a lookup's set exists and matches its key).
        return;
    }
    let again = dump_of_batch(&writer.finish().to_bytes(), Layout::default());
    match decode_dump(&again) {
        Ok(redecoded) => assert_eq!(
            redecoded,
            decoded,
            "what the decoder accepts must survive encode and decode\n{}",
            render(&decoded)
        ),
        Err(error) => panic!(
            "the encoding of a decoded table does not decode: {error}\n{}",
            render(&decoded)
        ),
    }
});
