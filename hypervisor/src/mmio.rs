//! TODO(room): mmio.
