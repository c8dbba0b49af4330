//! Lab (work in progress).
