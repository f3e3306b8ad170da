//! TODO(room): mm.
