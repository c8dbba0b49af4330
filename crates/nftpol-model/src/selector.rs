//! Label selectors: `matchLabels` AND `matchExpressions`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A validated label selector. `{}` (the default) selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Validates `selector`; an error message names the offending expression.
    pub(crate) fn parse(selector: &LabelSelector) -> Result<Self, String> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| Requirement::In(key.clone(), vec![value.clone()]))
            .collect();
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let values = expression.values.clone().unwrap_or_default();
            let key = expression.key.clone();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "matchExpressions[{index}]: operator {} needs values",
                        expression.operator
                    ))
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "matchExpressions[{index}]: operator {} takes no values",
                        expression.operator
                    ))
                }
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(format!(
                        "matchExpressions[{index}]: unknown operator {other:?}"
                    ))
                }
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether every requirement holds for `labels`. `NotIn` and
    /// `DoesNotExist` hold for objects that lack the key.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::In(key, values) => {
                    labels.get(key).is_some_and(|value| values.contains(value))
                }
                Requirement::NotIn(key, values) => {
                    labels.get(key).is_none_or(|value| !values.contains(value))
                }
                Requirement::Exists(key) => labels.contains_key(key),
                Requirement::DoesNotExist(key) => !labels.contains_key(key),
            })
    }
}

/// Canonical text in the API's selector syntax (`app=web,tier in (a,b),!legacy`);
/// `<all>` for the empty selector. Equal selectors print equally.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("<all>");
        }
        let terms: Vec<String> = self
            .requirements
            .iter()
            .map(|requirement| match requirement {
                Requirement::In(key, values) if values.len() == 1 => format!("{key}={}", values[0]),
                Requirement::In(key, values) => format!("{key} in ({})", values.join(",")),
                Requirement::NotIn(key, values) => format!("{key} notin ({})", values.join(",")),
                Requirement::Exists(key) => key.clone(),
                Requirement::DoesNotExist(key) => format!("!{key}"),
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: if values.is_empty() {
                    None
                } else {
                    Some(values.iter().map(|v| (*v).to_owned()).collect())
                },
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn operators_follow_the_spec() {
        let cases = [
            (
                "empty selects all",
                LabelSelector::default(),
                labels(&[]),
                true,
            ),
            (
                "In with value",
                expression("app", "In", &["web", "db"]),
                labels(&[("app", "db")]),
                true,
            ),
            (
                "In other value",
                expression("app", "In", &["web"]),
                labels(&[("app", "db")]),
                false,
            ),
            (
                "In lacking key",
                expression("app", "In", &["web"]),
                labels(&[]),
                false,
            ),
            (
                "NotIn lacking key",
                expression("app", "NotIn", &["web"]),
                labels(&[]),
                true,
            ),
            (
                "NotIn listed value",
                expression("app", "NotIn", &["web"]),
                labels(&[("app", "web")]),
                false,
            ),
            (
                "Exists",
                expression("app", "Exists", &[]),
                labels(&[("app", "")]),
                true,
            ),
            (
                "Exists lacking",
                expression("app", "Exists", &[]),
                labels(&[]),
                false,
            ),
            (
                "DoesNotExist lacking",
                expression("app", "DoesNotExist", &[]),
                labels(&[]),
                true,
            ),
            (
                "DoesNotExist present",
                expression("app", "DoesNotExist", &[]),
                labels(&[("app", "x")]),
                false,
            ),
            (
                "matchLabels AND",
                LabelSelector {
                    match_labels: Some(
                        [
                            ("a".to_owned(), "1".to_owned()),
                            ("b".to_owned(), "2".to_owned()),
                        ]
                        .into(),
                    ),
                    match_expressions: None,
                },
                labels(&[("a", "1")]),
                false,
            ),
        ];
        for (name, selector, object, want) in cases {
            let parsed = Selector::parse(&selector).unwrap();
            assert_eq!(parsed.matches(&object), want, "case {name}");
        }
    }

    #[test]
    fn invalid_expressions_are_errors() {
        for (operator, values) in [
            ("In", &[][..]),
            ("NotIn", &[][..]),
            ("Exists", &["x"][..]),
            ("Bogus", &["x"][..]),
        ] {
            assert!(
                Selector::parse(&expression("k", operator, values)).is_err(),
                "{operator} {values:?}"
            );
        }
    }
}
