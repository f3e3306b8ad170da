//! TODO(room): vcpu.
