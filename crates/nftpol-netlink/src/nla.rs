//! Netlink messages and attributes (TLVs): a writer that emits straight into a
//! batch buffer, and a reader that never panics on malformed input.
//!
//! Every length goes through `u16::try_from`: an attribute over 64 KiB is an
//! error here, never a silently wrapped `nla_len`.

use crate::uapi::{NLA_F_NESTED, NLA_TYPE_MASK};

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// Rounds up to the netlink alignment of 4 bytes.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// An attribute whose value does not fit the 16-bit `nla_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("netlink attribute {kind} would be {len} bytes, over the 65535-byte limit")]
pub struct AttrTooLarge {
    /// The attribute type.
    pub kind: u16,
    /// The length it would have had.
    pub len: usize,
}

/// Appends netlink messages and attributes to one buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The number of bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything written after `len` (undo of a partial write).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Consumes the writer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Starts a message: `nlmsghdr` (length patched by [`Writer::end_message`])
    /// plus `nfgenmsg`. Returns the message's start offset.
    pub fn begin_message(
        &mut self,
        kind: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Patches the length of the message started at `start`.
    pub fn end_message(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Appends one attribute.
    pub fn put(&mut self, kind: u16, value: &[u8]) -> Result<(), AttrTooLarge> {
        self.put_parts(kind, &[value])
    }

    /// Appends a big-endian `u32` attribute.
    pub fn put_u32(&mut self, kind: u16, value: u32) -> Result<(), AttrTooLarge> {
        self.put(kind, &value.to_be_bytes())
    }

    /// Appends a NUL-terminated string attribute.
    pub fn put_str(&mut self, kind: u16, value: &str) -> Result<(), AttrTooLarge> {
        self.put_parts(kind, &[value.as_bytes(), &[0]])
    }

    /// Appends one attribute whose value is `parts` in order, written in
    /// place (a string and its NUL need no joined copy).
    fn put_parts(&mut self, kind: u16, parts: &[&[u8]]) -> Result<(), AttrTooLarge> {
        let total = NLA_HDRLEN + parts.iter().map(|part| part.len()).sum::<usize>();
        let len = u16::try_from(total).map_err(|_| AttrTooLarge { kind, len: total })?;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.pad();
        Ok(())
    }

    /// Opens a nested attribute; close it with [`Writer::end_nested`].
    pub fn begin_nested(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Closes the nested attribute opened at `start`.
    pub fn end_nested(&mut self, start: usize) -> Result<(), AttrTooLarge> {
        let total = self.buf.len() - start;
        let kind = u16::from_ne_bytes([self.buf[start + 2], self.buf[start + 3]]) & NLA_TYPE_MASK;
        let len = u16::try_from(total).map_err(|_| AttrTooLarge { kind, len: total })?;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        Ok(())
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// Why bytes from the kernel could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header or value is shorter than its declared length.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A value has the wrong size or content.
    #[error("invalid {what}")]
    Invalid {
        /// What was being read.
        what: &'static str,
    },
}

/// One netlink message: header fields and payload after `nlmsghdr`.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// Bytes after the header.
    pub payload: &'a [u8],
}

/// Splits a datagram into netlink messages.
pub fn messages(mut bytes: &[u8]) -> impl Iterator<Item = Result<Message<'_>, WireError>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        if bytes.len() < NLMSG_HDRLEN {
            let have = bytes.len();
            bytes = &[];
            return Some(Err(WireError::Truncated {
                what: "nlmsghdr",
                need: NLMSG_HDRLEN,
                have,
            }));
        }
        let len = usize::try_from(u32_ne(&bytes[0..4])).unwrap_or(usize::MAX);
        if len < NLMSG_HDRLEN || len > bytes.len() {
            let have = bytes.len();
            bytes = &[];
            return Some(Err(WireError::Truncated {
                what: "netlink message",
                need: len,
                have,
            }));
        }
        let message = Message {
            kind: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
            seq: u32_ne(&bytes[8..12]),
            payload: &bytes[NLMSG_HDRLEN..len],
        };
        bytes = bytes.get(align(len)..).unwrap_or(&[]);
        Some(Ok(message))
    })
}

/// One attribute: its type without flags and its value.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    /// The attribute type, flags masked off.
    pub kind: u16,
    /// The value.
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The value as a big-endian `u32`.
    pub fn u32(&self, what: &'static str) -> Result<u32, WireError> {
        let bytes: [u8; 4] = self
            .value
            .try_into()
            .map_err(|_| WireError::Invalid { what })?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// The value as a NUL-terminated UTF-8 string.
    pub fn string(&self, what: &'static str) -> Result<String, WireError> {
        let bytes = self.value.split(|byte| *byte == 0).next().unwrap_or(&[]);
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Invalid { what })
    }

    /// The nested attributes.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }
}

/// Iterator over the attributes of a buffer.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Attrs<'a> {
    /// Attributes in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    /// Collects all attributes, failing on the first malformed one.
    pub fn collect_all(self) -> Result<Vec<Attr<'a>>, WireError> {
        self.collect()
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        if rest.len() < NLA_HDRLEN {
            self.offset = self.bytes.len();
            return Some(Err(WireError::Truncated {
                what: "nlattr",
                need: NLA_HDRLEN,
                have: rest.len(),
            }));
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > rest.len() {
            self.offset = self.bytes.len();
            return Some(Err(WireError::Truncated {
                what: "attribute value",
                need: len,
                have: rest.len(),
            }));
        }
        let attr = Attr {
            kind,
            value: &rest[NLA_HDRLEN..len],
        };
        self.offset += align(len);
        Some(Ok(attr))
    }
}

/// Reads a native-endian `u32` from exactly four bytes (callers slice exactly).
fn u32_ne(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_ne_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut writer = Writer::new();
        let start = writer.begin_message(1, 2, 3, 1, 0);
        let nest = writer.begin_nested(4);
        writer.put_str(1, "abc").unwrap();
        writer.put_u32(2, 7).unwrap();
        writer.end_nested(nest).unwrap();
        writer.end_message(start);
        let bytes = writer.into_bytes();
        let message = messages(&bytes).next().unwrap().unwrap();
        assert_eq!((message.kind, message.flags, message.seq), (1, 2, 3));
        let attrs = Attrs::new(&message.payload[NFGENMSG_LEN..])
            .collect_all()
            .unwrap();
        assert_eq!(attrs.len(), 1);
        let inner = attrs[0].nested().collect_all().unwrap();
        assert_eq!(inner[0].string("name").unwrap(), "abc");
        assert_eq!(inner[1].u32("value").unwrap(), 7);
    }

    #[test]
    fn oversized_attribute_is_an_error() {
        let mut writer = Writer::new();
        let err = writer.put(1, &vec![0u8; 70_000]).unwrap_err();
        assert_eq!(err.kind, 1);
        let nest = writer.begin_nested(3);
        for _ in 0..20 {
            writer.put(1, &[0u8; 4000]).unwrap();
        }
        assert_eq!(writer.end_nested(nest).unwrap_err().kind, 3);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(Attrs::new(&[8, 0, 1]).next().unwrap().is_err());
        assert!(Attrs::new(&[9, 0, 1, 0, 1]).next().unwrap().is_err());
        assert!(messages(&[40, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .next()
            .unwrap()
            .is_err());
    }
}
