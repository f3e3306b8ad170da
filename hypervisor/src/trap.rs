//! TODO(room): trap.
