//! KDL board descriptions to a validated, typed board model.
pub mod model;
