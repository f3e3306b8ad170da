//! TODO(room): vuart.
