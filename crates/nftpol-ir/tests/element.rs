//! `Element` stores a key once and a range as its two ends in one buffer:
//! it must still compare, order and hash as the pair (start, end, verdict)
//! it stands for, whatever constructor built it.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use nftpol_ir::{Element, Value, Verdict};
use proptest::prelude::*;

fn hash_of(element: &Element) -> u64 {
    let mut hasher = DefaultHasher::new();
    element.hash(&mut hasher);
    hasher.finish()
}

fn key() -> impl Strategy<Value = Vec<Value>> {
    // Few distinct values, so equal starts and equal ends are common.
    prop::collection::vec(
        prop_oneof![
            (0u8..3).prop_map(|last| Value::Ipv4(Ipv4Addr::new(10, 0, 0, last))),
            (0u16..3).prop_map(Value::Port),
        ],
        1..=2,
    )
}

fn verdict() -> impl Strategy<Value = Option<Verdict>> {
    prop_oneof![
        Just(None),
        Just(Some(Verdict::Accept)),
        Just(Some(Verdict::Jump("pod-a".to_owned()))),
    ]
}

proptest! {
    #[test]
    fn compares_and_orders_as_its_start_end_and_verdict(
        a in (key(), key(), verdict()),
        b in (key(), key(), verdict()),
    ) {
        let left = Element::new(a.0.clone(), a.1.clone(), a.2.clone());
        let right = Element::new(b.0.clone(), b.1.clone(), b.2.clone());
        prop_assert_eq!(left.start(), a.0.as_slice());
        prop_assert_eq!(left.end(), a.1.as_slice());
        prop_assert_eq!(left.verdict(), a.2.as_ref());
        let want: Ordering = (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2));
        prop_assert_eq!(left.cmp(&right), want);
        prop_assert_eq!(left == right, want == Ordering::Equal);
        if left == right {
            prop_assert_eq!(hash_of(&left), hash_of(&right));
        }
    }
}

#[test]
fn a_range_of_one_key_is_that_key() {
    let address = vec![Value::Ipv4(Ipv4Addr::new(10, 0, 0, 1))];
    let range = Element::range(address.clone(), address.clone());
    let key = Element::key(address.clone());
    assert_eq!(range, key);
    assert_eq!(hash_of(&range), hash_of(&key));
    assert_eq!(
        Element::new(address.clone(), address.clone(), Some(Verdict::Drop)),
        Element::mapping(address, Verdict::Drop)
    );
}

#[test]
fn debug_shows_start_end_and_verdict() {
    let element = Element::range(vec![Value::Port(80)], vec![Value::Port(90)]);
    assert_eq!(
        format!("{element:?}"),
        "Element { start: [Port(80)], end: [Port(90)], verdict: None }"
    );
}
