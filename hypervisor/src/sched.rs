//! TODO(room): sched.
