//! TODO(room): fdt.
