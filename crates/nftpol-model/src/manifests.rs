//! Multi-document YAML (as `kubectl apply -f` takes it) → a [`Cluster`].
//!
//! Parsing only: reading files is the caller's job.

use serde_json::Value;

use crate::cluster::Cluster;

/// The objects found, and what was ignored.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The objects.
    pub cluster: Cluster,
    /// Ignored kinds and fields, one line each, naming the document.
    pub warnings: Vec<String>,
}

/// A document that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML.
    #[error("document {document}: malformed YAML")]
    Yaml {
        /// 1-based document number.
        document: usize,
        /// The parser's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// YAML, but not a valid object of its kind.
    #[error("document {document} ({kind} {name}): invalid object")]
    Object {
        /// 1-based document number.
        document: usize,
        /// The document's kind.
        kind: String,
        /// The document's name, if it has one.
        name: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses every document of `text`. Unknown kinds and unknown fields are
/// ignored with a warning; `List` documents are flattened.
pub fn parse(text: &str) -> Result<Parsed, ManifestError> {
    let mut parsed = Parsed::default();
    for (position, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = position + 1;
        let value =
            <serde_yaml::Value as serde::Deserialize>::deserialize(document).map_err(|source| {
                ManifestError::Yaml {
                    document: number,
                    source,
                }
            })?;
        let value: Value =
            serde_json::to_value(&value).map_err(|source| ManifestError::Object {
                document: number,
                kind: String::new(),
                name: String::new(),
                source,
            })?;
        add(&mut parsed, number, &value)?;
    }
    Ok(parsed)
}

fn add(parsed: &mut Parsed, number: usize, value: &Value) -> Result<(), ManifestError> {
    if value.is_null() {
        return Ok(());
    }
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let decode_error = |source| ManifestError::Object {
        document: number,
        kind: kind.clone(),
        name: name.clone(),
        source,
    };
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "List") => {
            for item in value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                add(parsed, number, &item)?;
            }
        }
        ("v1", "Namespace") => {
            let object = decode(&mut parsed.warnings, number, value).map_err(decode_error)?;
            parsed.cluster.namespaces.push(object);
        }
        ("v1", "Pod") => {
            let object = decode(&mut parsed.warnings, number, value).map_err(decode_error)?;
            parsed.cluster.pods.push(object);
        }
        ("v1", "Node") => {
            let object = decode(&mut parsed.warnings, number, value).map_err(decode_error)?;
            parsed.cluster.nodes.push(object);
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            let object = decode(&mut parsed.warnings, number, value).map_err(decode_error)?;
            parsed.cluster.policies.push(object);
        }
        ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy") => {
            let object = decode(&mut parsed.warnings, number, value).map_err(decode_error)?;
            parsed.cluster.cluster_policies.push(object);
        }
        _ => parsed.warnings.push(format!(
            "document {number}: ignoring {api_version} {kind} {name}"
        )),
    }
    Ok(())
}

/// Decodes `value` and warns about every field the type does not know.
fn decode<T>(
    warnings: &mut Vec<String>,
    number: usize,
    value: &Value,
) -> Result<T, serde_json::Error>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let object: T = serde_json::from_value(value.clone())?;
    let known = serde_json::to_value(&object)?;
    let mut unknown = Vec::new();
    unknown_fields(value, &known, "", &mut unknown);
    warnings.extend(
        unknown
            .into_iter()
            .map(|field| format!("document {number}: ignoring unknown field {field}")),
    );
    Ok(object)
}

fn unknown_fields(given: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (given, known) {
        (Value::Object(given), Value::Object(known)) => {
            for (key, value) in given {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key) {
                    Some(known_value) => unknown_fields(value, known_value, &field, out),
                    // Null and empty values serialise away; only content is unknown.
                    None if !is_empty(value) => out.push(field),
                    None => {}
                }
            }
        }
        (Value::Array(given), Value::Array(known)) => {
            for (position, (value, known_value)) in given.iter().zip(known).enumerate() {
                unknown_fields(value, known_value, &format!("{path}[{position}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(list) => list.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kinds_and_warns_about_the_rest() {
        let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: "y", labels: {ns: "y"}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: "y"}
spec:
  nodeName: node-1
  bogusField: 1
  containers: [{name: c, image: i, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: "y"}
spec: {podSelector: {}}
"#;
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.cluster.namespaces.len(), 1);
        assert_eq!(parsed.cluster.pods.len(), 1);
        assert_eq!(parsed.cluster.policies.len(), 1);
        assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].contains("spec.bogusField"));
        assert!(parsed.warnings[1].contains("Deployment"));
    }

    #[test]
    fn malformed_yaml_names_the_document() {
        let error = parse("kind: Namespace\n---\n: : [\n").unwrap_err();
        assert!(
            matches!(error, ManifestError::Yaml { document: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn invalid_object_names_kind_and_name() {
        let error =
            parse("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n")
                .unwrap_err();
        assert!(
            matches!(&error, ManifestError::Object { kind, name, .. } if kind == "Pod" && name == "p"),
            "{error}"
        );
    }
}
