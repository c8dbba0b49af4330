//! `assert_ruleset!` fails on a one-rule difference and on reordered rules,
//! and passes when only objects or set elements are reordered.

use nftpol_testkit::assert_ruleset;
use nftpol_testkit::ruleset::compare;

/// Two sets and two chains, written in the renderer's order.
const RENDERED: &str = "table inet nftpol {
\tset peers-v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\tcomment \"peers\"
\t\telements = { 10.244.1.2,
\t\t\t     10.244.2.0-10.244.2.255 }
\t}
\tset ports {
\t\ttype inet_service
\t}
\tchain filter-forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tct state established,related accept
\t\tjump policy
\t}
\tchain policy {
\t\tip saddr @peers-v4 counter accept
\t\tcounter drop
\t}
}
";

#[test]
fn reordered_objects_and_elements_pass() {
    // Chains before sets, the other chain first, elements swapped, set
    // properties swapped, no table wrapper, other indentation.
    assert_ruleset!(
        RENDERED,
        "
        chain policy {
            ip saddr @peers-v4 counter accept
            counter drop
        }
        chain filter-forward {
            type filter hook forward priority 0; policy accept;
            ct state established,related accept
            jump policy
        }
        set ports {
            type inet_service
        }
        set peers-v4 {
            comment \"peers\"
            type ipv4_addr
            flags interval
            elements = { 10.244.2.0-10.244.2.255, 10.244.1.2 }
        }
        "
    );
}

#[test]
fn a_one_rule_difference_fails_with_a_diff() {
    let expected = RENDERED.replace("counter drop", "counter reject");
    let diff = compare(RENDERED, &expected).expect_err("one rule differs");
    assert!(diff.contains("- \tcounter reject"), "{diff}");
    assert!(diff.contains("+ \tcounter drop"), "{diff}");
    // The unchanged rule is context, not a difference.
    assert!(
        diff.contains("  \tip saddr @peers-v4 counter accept"),
        "{diff}"
    );
}

#[test]
fn reordered_rules_fail() {
    let expected = RENDERED.replace(
        "\t\tip saddr @peers-v4 counter accept\n\t\tcounter drop\n",
        "\t\tcounter drop\n\t\tip saddr @peers-v4 counter accept\n",
    );
    assert_ne!(expected, RENDERED);
    assert!(compare(RENDERED, &expected).is_err());
}

#[test]
fn a_missing_element_or_object_fails() {
    let fewer = RENDERED.replace("10.244.1.2,\n\t\t\t     ", "");
    assert!(compare(RENDERED, &fewer).is_err());
    let no_ports = RENDERED.replace("\tset ports {\n\t\ttype inet_service\n\t}\n", "");
    assert!(compare(RENDERED, &no_ports).is_err());
}

#[test]
fn an_unparseable_expected_block_is_reported_as_such() {
    let error = compare(RENDERED, "rule without a chain").expect_err("not nft text");
    assert!(error.starts_with("the expected block:"), "{error}");
}

#[test]
#[should_panic(expected = "rulesets differ")]
fn the_macro_panics_on_a_difference() {
    assert_ruleset!(RENDERED, &RENDERED.replace("jump policy", "goto policy"));
}
