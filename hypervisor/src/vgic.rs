//! TODO(room): vgic.
