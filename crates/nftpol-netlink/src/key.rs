//! Set keys as bytes: field lengths, concatenation padding, type ids, and the
//! arithmetic on keys that interval sets need (end + 1, end − 1, maximum).
//!
//! In a concatenation every field occupies a multiple of 4 bytes (one or more
//! 32-bit registers), value first and zero padding after; a single-field key
//! is exactly the field's length. All values are in network byte order,
//! except that `inet_proto` is one byte and needs no order.

use std::net::{Ipv4Addr, Ipv6Addr};

use nftpol_ir::{KeyType, Value};

use crate::uapi::{datatype, udata};

/// Bytes of one field's value.
pub fn field_len(key_type: KeyType) -> usize {
    match key_type {
        KeyType::Ipv4Addr => 4,
        KeyType::Ipv6Addr => 16,
        KeyType::InetProto => 1,
        KeyType::InetService => 2,
    }
}

/// Bytes one field occupies in a key: padded to 4 in a concatenation.
pub fn slot_len(key_type: KeyType, concatenated: bool) -> usize {
    if concatenated {
        crate::nla::align(field_len(key_type))
    } else {
        field_len(key_type)
    }
}

/// Total key length (`NFTA_SET_KEY_LEN`).
pub fn key_len(key: &[KeyType]) -> usize {
    let concatenated = key.len() > 1;
    key.iter()
        .map(|key_type| slot_len(*key_type, concatenated))
        .sum()
}

/// The nft datatype id of a field.
pub fn type_id(key_type: KeyType) -> u32 {
    match key_type {
        KeyType::Ipv4Addr => datatype::IPV4_ADDR,
        KeyType::Ipv6Addr => datatype::IPV6_ADDR,
        KeyType::InetProto => datatype::INET_PROTO,
        KeyType::InetService => datatype::INET_SERVICE,
    }
}

/// `NFTA_SET_KEY_TYPE`: one id, or 6 bits per field for a concatenation.
pub fn key_type_id(key: &[KeyType]) -> u32 {
    key.iter().fold(0, |id, key_type| {
        (id << datatype::CONCAT_SHIFT) | type_id(*key_type)
    })
}

/// Inverse of [`key_type_id`].
pub fn key_types_of(mut id: u32) -> Option<Vec<KeyType>> {
    let mut fields = Vec::new();
    while id != 0 {
        let field = match id & ((1 << datatype::CONCAT_SHIFT) - 1) {
            datatype::IPV4_ADDR => KeyType::Ipv4Addr,
            datatype::IPV6_ADDR => KeyType::Ipv6Addr,
            datatype::INET_PROTO => KeyType::InetProto,
            datatype::INET_SERVICE => KeyType::InetService,
            _ => return None,
        };
        fields.push(field);
        id >>= datatype::CONCAT_SHIFT;
    }
    fields.reverse();
    (!fields.is_empty()).then_some(fields)
}

/// The byte order nft 1.0.6 records in the set's userdata for this key.
pub fn key_byteorder(key: &[KeyType]) -> u32 {
    match key {
        [KeyType::Ipv4Addr | KeyType::Ipv6Addr | KeyType::InetService] => {
            udata::BYTEORDER_BIG_ENDIAN
        }
        _ => 0,
    }
}

/// The key type of a value.
pub fn type_of(value: Value) -> KeyType {
    match value {
        Value::Ipv4(_) => KeyType::Ipv4Addr,
        Value::Ipv6(_) => KeyType::Ipv6Addr,
        Value::Proto(_) => KeyType::InetProto,
        Value::Port(_) => KeyType::InetService,
    }
}

/// Encodes `values` as a key of type `key`.
pub fn encode(key: &[KeyType], values: &[Value]) -> Result<Vec<u8>, String> {
    if key.len() != values.len() {
        return Err(format!(
            "{} values for a key of {} fields",
            values.len(),
            key.len()
        ));
    }
    let concatenated = key.len() > 1;
    let mut bytes = Vec::with_capacity(key_len(key));
    for (key_type, value) in key.iter().zip(values) {
        if type_of(*value) != *key_type {
            return Err(format!("value {value:?} in a {key_type:?} field"));
        }
        match value {
            Value::Ipv4(addr) => bytes.extend_from_slice(&addr.octets()),
            Value::Ipv6(addr) => bytes.extend_from_slice(&addr.octets()),
            Value::Proto(proto) => bytes.push(*proto),
            Value::Port(port) => bytes.extend_from_slice(&port.to_be_bytes()),
        }
        if concatenated {
            bytes.resize(crate::nla::align(bytes.len()), 0);
        }
    }
    Ok(bytes)
}

/// Decodes a key of type `key`.
pub fn decode(key: &[KeyType], bytes: &[u8]) -> Result<Vec<Value>, String> {
    if bytes.len() != key_len(key) {
        return Err(format!(
            "key of {} bytes for a type of {} bytes",
            bytes.len(),
            key_len(key)
        ));
    }
    let concatenated = key.len() > 1;
    let mut rest = bytes;
    let mut values = Vec::with_capacity(key.len());
    for key_type in key {
        let (field, tail) = rest.split_at(slot_len(*key_type, concatenated));
        rest = tail;
        let value = &field[..field_len(*key_type)];
        values.push(match key_type {
            KeyType::Ipv4Addr => Value::Ipv4(Ipv4Addr::from(
                <[u8; 4]>::try_from(value).map_err(|_| "ipv4 length")?,
            )),
            KeyType::Ipv6Addr => Value::Ipv6(Ipv6Addr::from(
                <[u8; 16]>::try_from(value).map_err(|_| "ipv6 length")?,
            )),
            KeyType::InetProto => Value::Proto(value[0]),
            KeyType::InetService => Value::Port(u16::from_be_bytes([value[0], value[1]])),
        });
    }
    Ok(values)
}

/// `bytes + 1` as a big-endian number; `None` when `bytes` is the maximum.
pub fn increment(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut next = bytes.to_vec();
    for byte in next.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            return Some(next);
        }
    }
    None
}

/// `bytes − 1` as a big-endian number; `None` when `bytes` is zero.
pub fn decrement(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut previous = bytes.to_vec();
    for byte in previous.iter_mut().rev() {
        let (difference, borrow) = byte.overflowing_sub(1);
        *byte = difference;
        if !borrow {
            return Some(previous);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_keys_are_padded_per_field() {
        let key = [KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService];
        let values = [
            Value::Ipv4(Ipv4Addr::new(10, 0, 0, 1)),
            Value::Proto(6),
            Value::Port(80),
        ];
        let bytes = encode(&key, &values).unwrap();
        assert_eq!(bytes, [10, 0, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]);
        assert_eq!(decode(&key, &bytes).unwrap(), values);
        assert_eq!(key_type_id(&key), 0x730d);
        assert_eq!(key_types_of(0x730d).unwrap(), key);
        assert_eq!(key_len(&[KeyType::InetService]), 2);
    }

    #[test]
    fn interval_arithmetic_carries_and_stops_at_the_ends() {
        assert_eq!(increment(&[0, 255]).unwrap(), [1, 0]);
        assert_eq!(increment(&[255, 255]), None);
        assert_eq!(decrement(&[1, 0]).unwrap(), [0, 255]);
        assert_eq!(decrement(&[0, 0]), None);
    }

    #[test]
    fn mismatched_values_are_rejected() {
        assert!(encode(&[KeyType::Ipv4Addr], &[Value::Port(1)]).is_err());
        assert!(decode(&[KeyType::Ipv4Addr], &[1, 2, 3]).is_err());
        assert!(key_types_of(63).is_none());
    }
}
