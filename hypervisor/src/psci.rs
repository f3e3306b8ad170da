//! TODO(room): psci.
