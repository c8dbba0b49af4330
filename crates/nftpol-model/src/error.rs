//! Errors about input objects.

/// An invalid part of an object; the rest of the object still applies.
/// `problem` says what applies instead: an invalid part of a policy's rules
/// allows nothing, a malformed annotation falls back to its default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {problem}")]
pub struct ModelError {
    /// The object's kind, e.g. `NetworkPolicy`.
    pub kind: &'static str,
    /// `namespace/name` (or `name` for cluster-scoped objects).
    pub object: String,
    /// The field path, e.g. `spec.ingress[0].from[1].ipBlock.except[2]`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}
