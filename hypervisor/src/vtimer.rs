//! TODO(room): vtimer.
