//! Ruleset assertions in nft text: [`assert_ruleset!`](crate::assert_ruleset)
//! compares a ruleset (rendered with `nftpol_ir::render::render`) or any nft
//! text with an expected block as a person writes it.
//!
//! Both sides are brought to one canonical form before comparing: the order
//! of objects (sets, maps, chains) and of set elements is ignored, because
//! neither means anything to the kernel; the order of rules within a chain
//! is kept, because it decides verdicts. Properties of a set (`type`,
//! `flags`, `comment`) are unordered too. Whitespace runs count as one
//! space, and the `table inet nftpol { … }` wrapper may be left out of the
//! expected block. On a mismatch the panic shows a line diff of the two
//! canonical forms (`-` expected, `+` actual).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nftpol_ir::render::render;
use nftpol_ir::Ruleset;

/// What can stand on the actual side of [`assert_ruleset!`](crate::assert_ruleset).
pub trait NftText {
    /// The nft text.
    fn nft_text(&self) -> String;
}

impl NftText for Ruleset {
    fn nft_text(&self) -> String {
        render(self)
    }
}

impl NftText for str {
    fn nft_text(&self) -> String {
        self.to_owned()
    }
}

impl NftText for String {
    fn nft_text(&self) -> String {
        self.clone()
    }
}

impl<T: NftText + ?Sized> NftText for &T {
    fn nft_text(&self) -> String {
        (**self).nft_text()
    }
}

/// One set, map or chain.
#[derive(Debug, Default, PartialEq, Eq)]
struct Object {
    /// Set properties (sorted) or chain lines (in order).
    lines: Vec<String>,
    /// Set elements, sorted.
    elements: Vec<String>,
}

/// A table: objects by `(kind, name)`.
type Canonical = BTreeMap<(String, String), Object>;

fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses nft text into its canonical form.
fn parse(text: &str) -> Result<Canonical, String> {
    let mut lines = text
        .lines()
        .map(normalize)
        .filter(|line| !line.is_empty())
        .peekable();
    let wrapped = lines.peek().is_some_and(|line| line.starts_with("table "));
    if wrapped {
        lines.next();
    }
    let mut objects = Canonical::new();
    let mut closed = false;
    while let Some(line) = lines.next() {
        if closed {
            return Err(format!("text after the table's closing brace: {line:?}"));
        }
        if line == "}" && wrapped {
            closed = true;
            continue;
        }
        let header = line
            .strip_suffix(" {")
            .and_then(|head| head.split_once(' '))
            .filter(|(kind, _)| matches!(*kind, "set" | "map" | "chain"));
        let Some((kind, name)) = header else {
            return Err(format!("expected `set|map|chain NAME {{`, found {line:?}"));
        };
        let mut object = Object::default();
        loop {
            let Some(line) = lines.next() else {
                return Err(format!("{kind} {name}: no closing brace"));
            };
            if line == "}" {
                break;
            }
            if let Some(rest) = line.strip_prefix("elements = {") {
                let mut list = rest.to_owned();
                while !list.contains('}') {
                    let Some(more) = lines.next() else {
                        return Err(format!("{kind} {name}: unterminated elements"));
                    };
                    list.push(' ');
                    list.push_str(&more);
                }
                let inside = list.split('}').next().unwrap_or_default();
                object.elements.extend(
                    inside
                        .split(',')
                        .map(normalize)
                        .filter(|element| !element.is_empty()),
                );
            } else {
                object.lines.push(line);
            }
        }
        if kind != "chain" {
            object.lines.sort();
        }
        object.elements.sort();
        if objects
            .insert((kind.to_owned(), name.to_owned()), object)
            .is_some()
        {
            return Err(format!("{kind} {name} appears twice"));
        }
    }
    if wrapped && !closed {
        return Err("the table has no closing brace".to_owned());
    }
    Ok(objects)
}

/// The canonical form as text, one object after another by kind and name,
/// one element a line.
fn show(objects: &Canonical) -> Vec<String> {
    let mut out = Vec::new();
    for ((kind, name), object) in objects {
        out.push(format!("{kind} {name} {{"));
        out.extend(object.lines.iter().map(|line| format!("\t{line}")));
        if !object.elements.is_empty() {
            out.push("\telements = {".to_owned());
            out.extend(
                object
                    .elements
                    .iter()
                    .map(|element| format!("\t\t{element}")),
            );
            out.push("\t}".to_owned());
        }
        out.push("}".to_owned());
    }
    out
}

/// Lines of context shown around each difference.
const CONTEXT: usize = 3;

/// A line diff of `expected` and `actual` (longest common subsequence):
/// ` ` both, `-` expected only, `+` actual only; only the differences and
/// [`CONTEXT`] lines around each are shown, `…` marks what is left out.
fn line_diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: the common subsequence length of expected[i..], actual[j..].
    let mut lcs = vec![vec![0_usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            lines.push((' ', &expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            lines.push(('+', &actual[j]));
            j += 1;
        } else {
            lines.push(('-', &expected[i]));
            i += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&index| lines[index].0 != ' ')
        .collect();
    let near = |index: usize| {
        changed
            .iter()
            .any(|&change| change.abs_diff(index) <= CONTEXT)
    };
    let mut out = String::new();
    let mut skipped = false;
    for (index, (mark, line)) in lines.iter().enumerate() {
        if near(index) {
            if skipped {
                out.push_str("  …\n");
                skipped = false;
            }
            let _ = writeln!(out, "{mark} {line}");
        } else {
            skipped = true;
        }
    }
    if skipped {
        out.push_str("  …\n");
    }
    out
}

/// Compares `actual` with `expected` in canonical form; the error is the
/// readable diff (or says which side does not parse).
pub fn compare(actual: &str, expected: &str) -> Result<(), String> {
    let want = parse(expected).map_err(|error| format!("the expected block: {error}"))?;
    let got = parse(actual).map_err(|error| format!("the actual text: {error}\n{actual}"))?;
    if want == got {
        return Ok(());
    }
    Err(format!(
        "rulesets differ (- expected, + actual; object and element order ignored):\n{}",
        line_diff(&show(&want), &show(&got))
    ))
}

/// The function behind [`assert_ruleset!`](crate::assert_ruleset).
///
/// # Panics
/// When the two differ, with the diff.
#[track_caller]
pub fn assert_ruleset_eq(actual: &(impl NftText + ?Sized), expected: &str) {
    if let Err(diff) = compare(&actual.nft_text(), expected) {
        panic!("{diff}");
    }
}

/// Asserts that a ruleset (a `Ruleset`, rendered, or nft text) equals an
/// expected nft text block, ignoring the order of objects and of set
/// elements and keeping the order of rules within a chain; panics with a
/// diff otherwise.
///
/// ```
/// # use nftpol_testkit::assert_ruleset;
/// let rendered = "table inet nftpol {\n\tset b {\n\t\ttype ipv4_addr\n\t}\n\
///                 \tset a {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.2, 10.0.0.1 }\n\t}\n}\n";
/// assert_ruleset!(
///     rendered,
///     "
///     set a {
///         type ipv4_addr
///         elements = { 10.0.0.1, 10.0.0.2 }
///     }
///     set b {
///         type ipv4_addr
///     }
///     "
/// );
/// ```
#[macro_export]
macro_rules! assert_ruleset {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::ruleset::assert_ruleset_eq(&$actual, $expected)
    };
}
