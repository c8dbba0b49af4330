//! Sets, maps and their elements ↔ `NEWSET` / `NEWSETELEM` attributes, as
//! nft 1.0.6 writes them.
//!
//! Kernel rules this encoding follows (see `shared/notes/nftables-netlink.md`):
//! - single-field interval sets (rbtree): a range is its start (no flags) and
//!   `end + 1` with `NFT_SET_ELEM_INTERVAL_END`; a range ending at the maximum
//!   key sends the start only, marked open in the element's userdata as nft does;
//! - concatenated interval sets (pipapo) need `NFT_SET_CONCAT` and
//!   `NFTA_SET_DESC_CONCAT` field lengths; each element carries `KEY` and `KEY_END`;
//! - verdict maps have data type `NFT_DATA_VERDICT`; element data is a verdict;
//! - dynamic maps (`flags dynamic,timeout`) have a data type like a key's,
//!   `NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL` and a size
//!   (`NFTA_SET_DESC_SIZE`); the packet path writes their elements.

use std::collections::BTreeSet;

use nftpol_ir::{DynamicMap, Element, KeyType, Set, Verdict};

use crate::expr::{read_value, read_verdict, write_verdict, RawVerdict};
use crate::key;
use crate::nla::{AttrTooLarge, Attrs, WireError, Writer};
use crate::uapi::{elem, list, set as s, udata, verdict as code};

/// Why a set or element cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum SetEncodeError {
    /// The IR is inconsistent with the set's shape.
    #[error("{0}")]
    Shape(String),
    /// An attribute is over 64 KiB.
    #[error(transparent)]
    TooLarge(#[from] AttrTooLarge),
}

/// Writes the attributes of a `NEWSET` for `set` (without elements).
/// `id` is the set's transaction id (`NFTA_SET_ID`, required by the kernel).
pub fn write_set(w: &mut Writer, table: &str, set: &Set, id: u32) -> Result<(), SetEncodeError> {
    if set.key.is_empty() {
        return Err(SetEncodeError::Shape(
            "a set needs at least one key field".to_owned(),
        ));
    }
    let concatenated = set.key.len() > 1;
    let mut flags = 0;
    if set.interval {
        flags |= s::F_INTERVAL;
    }
    if set.is_verdict_map {
        flags |= s::F_MAP;
    }
    if set.dynamic.is_some() {
        flags |= s::F_MAP | s::F_TIMEOUT | s::F_EVAL;
    }
    if set.is_concatenated_interval() {
        flags |= s::F_CONCAT;
    }
    let key_len = u32::try_from(key::key_len(&set.key))
        .map_err(|_| SetEncodeError::Shape("key too long".to_owned()))?;
    w.put_str(s::TABLE, table)?;
    w.put_str(s::NAME, &set.name)?;
    w.put_u32(s::FLAGS, flags)?;
    w.put_u32(s::KEY_TYPE, key::key_type_id(&set.key))?;
    w.put_u32(s::KEY_LEN, key_len)?;
    if set.is_verdict_map {
        w.put_u32(s::DATA_TYPE, s::DATA_VERDICT)?;
        w.put_u32(s::DATA_LEN, 0)?;
    }
    if let Some(dynamic) = &set.dynamic {
        let data_len = u32::try_from(key::key_len(&dynamic.data))
            .map_err(|_| SetEncodeError::Shape("data too long".to_owned()))?;
        w.put_u32(s::DATA_TYPE, key::key_type_id(&dynamic.data))?;
        w.put_u32(s::DATA_LEN, data_len)?;
    }
    w.put_u32(s::ID, id)?;
    if let Some(dynamic) = &set.dynamic {
        let desc = w.begin_nested(s::DESC);
        w.put_u32(s::DESC_SIZE, dynamic.size)?;
        w.end_nested(desc)?;
    }
    if set.is_concatenated_interval() {
        let desc = w.begin_nested(s::DESC);
        let concat = w.begin_nested(s::DESC_CONCAT);
        for key_type in &set.key {
            let field = w.begin_nested(list::ELEM);
            w.put_u32(
                s::FIELD_LEN,
                u32::try_from(key::field_len(*key_type)).unwrap_or(u32::MAX),
            )?;
            w.end_nested(field)?;
        }
        w.end_nested(concat)?;
        w.end_nested(desc)?;
    }
    let mut userdata = Vec::new();
    push_udata(
        &mut userdata,
        udata::SET_KEYBYTEORDER,
        &key::key_byteorder(&set.key).to_ne_bytes(),
    )?;
    if set.is_verdict_map {
        push_udata(&mut userdata, udata::SET_DATABYTEORDER, &0u32.to_ne_bytes())?;
    }
    if let Some(dynamic) = &set.dynamic {
        push_udata(
            &mut userdata,
            udata::SET_DATABYTEORDER,
            &key::key_byteorder(&dynamic.data).to_ne_bytes(),
        )?;
    }
    if concatenated {
        userdata.extend_from_slice(&udata::CONCAT_KEY_TYPEOF);
    }
    if set.is_verdict_map {
        push_udata(&mut userdata, udata::SET_DATA_INTERVAL, &0u32.to_ne_bytes())?;
    }
    if let Some(comment) = &set.comment {
        push_udata(&mut userdata, udata::SET_COMMENT, &nul_terminated(comment))?;
    }
    w.put(s::USERDATA, &userdata)?;
    Ok(())
}

/// Appends one libnftnl userdata TLV (`u8` type, `u8` length, value).
pub fn push_udata(buf: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), SetEncodeError> {
    let len = u8::try_from(value.len()).map_err(|_| {
        SetEncodeError::Shape(format!("userdata of {} bytes is over 255", value.len()))
    })?;
    buf.push(kind);
    buf.push(len);
    buf.extend_from_slice(value);
    Ok(())
}

/// Reads the value of userdata TLV `kind`.
pub fn find_udata(bytes: &[u8], kind: u8) -> Option<&[u8]> {
    let mut rest = bytes;
    while let [found, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *found == kind {
            return Some(value);
        }
        rest = &tail[usize::from(*len)..];
    }
    None
}

/// A string as a comment value: its bytes and a NUL.
pub fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// A comment from a userdata value.
pub fn comment_of(value: &[u8]) -> Result<String, WireError> {
    let text = value.split(|byte| *byte == 0).next().unwrap_or(&[]);
    String::from_utf8(text.to_vec()).map_err(|_| WireError::Invalid { what: "comment" })
}

/// The kernel encoding of a verdict.
pub fn raw_verdict(verdict: &Verdict) -> Result<RawVerdict, String> {
    Ok(match verdict {
        Verdict::Accept => RawVerdict {
            code: code::ACCEPT,
            chain: None,
        },
        Verdict::Drop => RawVerdict {
            code: code::DROP,
            chain: None,
        },
        Verdict::Return => RawVerdict {
            code: code::RETURN,
            chain: None,
        },
        Verdict::Jump(chain) => RawVerdict {
            code: code::JUMP,
            chain: Some(chain.clone()),
        },
        Verdict::Goto(chain) => RawVerdict {
            code: code::GOTO,
            chain: Some(chain.clone()),
        },
        Verdict::Reject => return Err("reject is a statement, not a verdict value".to_owned()),
    })
}

/// The IR verdict of a kernel verdict.
pub fn verdict_of(raw: &RawVerdict) -> Option<Verdict> {
    match (raw.code, &raw.chain) {
        (code::ACCEPT, None) => Some(Verdict::Accept),
        (code::DROP, None) => Some(Verdict::Drop),
        (code::RETURN, None) => Some(Verdict::Return),
        (code::JUMP, Some(chain)) => Some(Verdict::Jump(chain.clone())),
        (code::GOTO, Some(chain)) => Some(Verdict::Goto(chain.clone())),
        _ => None,
    }
}

/// Writes the `NFTA_LIST_ELEM` nests of one IR element (one or two kernel
/// elements); `delete` leaves out data and userdata.
pub fn write_element(
    w: &mut Writer,
    set: &Set,
    element: &Element,
    delete: bool,
) -> Result<(), SetEncodeError> {
    let shape = |reason: String| SetEncodeError::Shape(reason);
    let start = key::encode(&set.key, element.start()).map_err(shape)?;
    let end = key::encode(&set.key, element.end()).map_err(shape)?;
    let verdict = match (element.verdict(), set.is_verdict_map) {
        (Some(verdict), true) => Some(raw_verdict(verdict).map_err(shape)?),
        (None, false) => None,
        (Some(_), false) => return Err(shape("a verdict in a set that is not a map".to_owned())),
        (None, true) => return Err(shape("no verdict in a verdict map".to_owned())),
    };
    let verdict = if delete { None } else { verdict };
    if !set.interval {
        if start != end {
            return Err(shape("a range in a set without flags interval".to_owned()));
        }
        let nest = w.begin_nested(list::ELEM);
        write_key(w, elem::KEY, &start)?;
        write_data(w, verdict.as_ref())?;
        return Ok(w.end_nested(nest)?);
    }
    if start > end {
        return Err(shape("a range whose start is after its end".to_owned()));
    }
    if set.key.len() > 1 {
        let nest = w.begin_nested(list::ELEM);
        write_key(w, elem::KEY, &start)?;
        write_key(w, elem::KEY_END, &end)?;
        write_data(w, verdict.as_ref())?;
        return Ok(w.end_nested(nest)?);
    }
    let after = key::increment(&end);
    let nest = w.begin_nested(list::ELEM);
    write_key(w, elem::KEY, &start)?;
    write_data(w, verdict.as_ref())?;
    if after.is_none() && !delete {
        let mut open = Vec::new();
        push_udata(
            &mut open,
            udata::SET_ELEM_FLAGS,
            &udata::SET_ELEM_F_INTERVAL_OPEN.to_ne_bytes(),
        )?;
        w.put(elem::USERDATA, &open)?;
    }
    w.end_nested(nest)?;
    if let Some(after) = after {
        let nest = w.begin_nested(list::ELEM);
        w.put_u32(elem::FLAGS, elem::F_INTERVAL_END)?;
        write_key(w, elem::KEY, &after)?;
        w.end_nested(nest)?;
    }
    Ok(())
}

fn write_key(w: &mut Writer, kind: u16, bytes: &[u8]) -> Result<(), AttrTooLarge> {
    let nest = w.begin_nested(kind);
    w.put(list::DATA_VALUE, bytes)?;
    w.end_nested(nest)
}

fn write_data(w: &mut Writer, verdict: Option<&RawVerdict>) -> Result<(), AttrTooLarge> {
    if let Some(verdict) = verdict {
        let nest = w.begin_nested(elem::DATA);
        write_verdict(w, verdict)?;
        w.end_nested(nest)?;
    }
    Ok(())
}

/// A set read from a `NEWSET` dump message, and the table it belongs to.
pub fn read_set(attrs: Attrs<'_>) -> Result<(String, Set), String> {
    let mut table = None;
    let mut name = None;
    let mut flags = 0;
    let mut key_type = None;
    let mut key_len = None;
    let mut data_type = None;
    let mut data_len = None;
    let mut size = None;
    let mut comment = None;
    for attr in attrs {
        let attr = attr.map_err(|e| e.to_string())?;
        let wire = |e: WireError| e.to_string();
        match attr.kind {
            s::TABLE => table = Some(attr.string("set table").map_err(wire)?),
            s::NAME => name = Some(attr.string("set name").map_err(wire)?),
            s::FLAGS => flags = attr.u32("set flags").map_err(wire)?,
            s::KEY_TYPE => key_type = Some(attr.u32("set key type").map_err(wire)?),
            s::KEY_LEN => key_len = Some(attr.u32("set key len").map_err(wire)?),
            s::DATA_TYPE => data_type = Some(attr.u32("set data type").map_err(wire)?),
            s::DATA_LEN => data_len = Some(attr.u32("set data len").map_err(wire)?),
            s::DESC => {
                for inner in attr.nested() {
                    let inner = inner.map_err(wire)?;
                    if inner.kind == s::DESC_SIZE {
                        size = Some(inner.u32("set size").map_err(wire)?);
                    }
                }
            }
            s::USERDATA => {
                comment = find_udata(attr.value, udata::SET_COMMENT)
                    .map(comment_of)
                    .transpose()
                    .map_err(wire)?;
            }
            _ => {}
        }
    }
    let table = table.ok_or("set without table")?;
    let name = name.ok_or("set without name")?;
    let key: Vec<KeyType> = key_type
        .and_then(key::key_types_of)
        .ok_or_else(|| format!("set {name:?}: unknown key type {key_type:?}"))?;
    if key_len.and_then(|len| usize::try_from(len).ok()) != Some(key::key_len(&key)) {
        return Err(format!(
            "set {name:?}: key length {key_len:?} does not match its type"
        ));
    }
    let known = s::F_INTERVAL | s::F_MAP | s::F_CONCAT | s::F_TIMEOUT | s::F_EVAL;
    if flags & !known != 0 {
        return Err(format!("set {name:?}: unexpected flags {flags:#x}"));
    }
    let dynamic_flags = s::F_MAP | s::F_TIMEOUT | s::F_EVAL;
    let dynamic = if flags & (s::F_TIMEOUT | s::F_EVAL) == 0 {
        None
    } else if flags & dynamic_flags == dynamic_flags {
        let data = data_type
            .and_then(key::key_types_of)
            .ok_or_else(|| format!("set {name:?}: unknown data type {data_type:?}"))?;
        if data_len.and_then(|len| usize::try_from(len).ok()) != Some(key::key_len(&data)) {
            return Err(format!(
                "set {name:?}: data length {data_len:?} does not match its type"
            ));
        }
        Some(DynamicMap {
            data,
            size: size.ok_or_else(|| format!("set {name:?}: a dynamic map without a size"))?,
        })
    } else {
        return Err(format!("set {name:?}: a dynamic set that is not a map"));
    };
    let is_verdict_map = flags & s::F_MAP != 0 && dynamic.is_none();
    if is_verdict_map && data_type != Some(s::DATA_VERDICT) {
        return Err(format!("set {name:?}: a map whose data is not a verdict"));
    }
    let set = Set {
        name,
        key,
        interval: flags & s::F_INTERVAL != 0,
        is_verdict_map,
        dynamic,
        comment,
        elements: BTreeSet::new(),
    };
    Ok((table, set))
}

/// One kernel element as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawElement {
    /// `NFTA_SET_ELEM_KEY`.
    pub key: Vec<u8>,
    /// `NFTA_SET_ELEM_KEY_END`.
    pub key_end: Option<Vec<u8>>,
    /// Whether `NFT_SET_ELEM_INTERVAL_END` is set.
    pub is_end: bool,
    /// The verdict of a map element.
    pub verdict: Option<RawVerdict>,
}

/// Kernel elements of an `NFTA_SET_ELEM_LIST_ELEMENTS` nest.
pub fn read_raw_elements(
    list_attrs: Attrs<'_>,
    out: &mut Vec<RawElement>,
) -> Result<(), WireError> {
    for item in list_attrs {
        let item = item?;
        if item.kind != list::ELEM {
            continue;
        }
        let mut raw = RawElement {
            key: Vec::new(),
            key_end: None,
            is_end: false,
            verdict: None,
        };
        let mut has_key = false;
        for attr in item.nested() {
            let attr = attr?;
            match attr.kind {
                elem::KEY => {
                    raw.key = read_value(attr.nested())?;
                    has_key = true;
                }
                elem::KEY_END => raw.key_end = Some(read_value(attr.nested())?),
                elem::FLAGS => raw.is_end = attr.u32("element flags")? & elem::F_INTERVAL_END != 0,
                elem::DATA => raw.verdict = Some(read_verdict(attr.nested())?),
                _ => {}
            }
        }
        if !has_key {
            return Err(WireError::Invalid {
                what: "element without key",
            });
        }
        out.push(raw);
    }
    Ok(())
}

/// The IR elements of `set` from its kernel elements.
pub fn to_elements(set: &Set, mut raw: Vec<RawElement>) -> Result<BTreeSet<Element>, String> {
    let verdict_of_raw = |raw: &RawElement| -> Result<Option<Verdict>, String> {
        match (&raw.verdict, set.is_verdict_map) {
            (Some(verdict), true) => verdict_of(verdict)
                .map(Some)
                .ok_or_else(|| format!("unknown verdict {verdict:?}")),
            (None, false) => Ok(None),
            _ => Err("element data does not match the set type".to_owned()),
        }
    };
    let mut elements = BTreeSet::new();
    if !set.interval || set.key.len() > 1 {
        for raw in &raw {
            let start = key::decode(&set.key, &raw.key)?;
            let end = match (&raw.key_end, set.interval) {
                (Some(end), true) => key::decode(&set.key, end)?,
                (None, _) => start.clone(),
                (Some(_), false) => return Err("KEY_END in a set without interval".to_owned()),
            };
            elements.insert(Element::new(start, end, verdict_of_raw(raw)?));
        }
        return Ok(elements);
    }
    // rbtree: pair each start with the end that follows it. An end at the same
    // key as a start closes the previous range (adjacent ranges), so ends sort
    // first. An end with nothing open is nft's leading "0 end" marker.
    raw.sort_by(|a, b| a.key.cmp(&b.key).then(b.is_end.cmp(&a.is_end)));
    let mut open: Option<(Vec<u8>, Option<Verdict>)> = None;
    for raw in &raw {
        if raw.is_end {
            if let Some((start, verdict)) = open.take() {
                let last = key::decrement(&raw.key).ok_or("interval end at zero")?;
                elements.insert(Element::new(
                    key::decode(&set.key, &start)?,
                    key::decode(&set.key, &last)?,
                    verdict,
                ));
            }
        } else if open.is_some() {
            return Err("two interval starts without an end between them".to_owned());
        } else {
            open = Some((raw.key.clone(), verdict_of_raw(raw)?));
        }
    }
    if let Some((start, verdict)) = open {
        let max = vec![0xff; start.len()];
        elements.insert(Element::new(
            key::decode(&set.key, &start)?,
            key::decode(&set.key, &max)?,
            verdict,
        ));
    }
    Ok(elements)
}
