//! Support gating: an experimental board builds only with an explicit opt-in.
//!
//! The decision comes from the board's data (`support "experimental"`, disabled devices),
//! never from its name.

use platform_dsl::model::{Board, Status, SupportLevel};

/// `Ok` if the board may be built; otherwise the message for `compile_error!`.
pub fn check(board: &Board, allow_experimental: bool) -> Result<(), String> {
    if board.support != SupportLevel::Experimental || allow_experimental {
        return Ok(());
    }
    let disabled: Vec<String> = board
        .devices
        .iter()
        .filter_map(|d| match &d.status {
            Status::Disabled { reason } => Some(format!("{}: {reason}", d.name)),
            Status::Okay => None,
        })
        .collect();
    let what = if disabled.is_empty() {
        "support level experimental".to_owned()
    } else {
        format!("disabled devices: {}", disabled.join("; "))
    };
    let name = &board.name;
    Err(format!(
        "board `{name}` is experimental ({what}). Opt in with \
         `cargo xtask build --board {name} --allow-experimental` or \
         `board!(..., allow_experimental = true)`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn supported_board_needs_no_opt_in() {
        assert_eq!(check(&fixture::two_socket(), false), Ok(()));
    }

    #[test]
    fn community_board_needs_no_opt_in() {
        let mut b = fixture::two_socket();
        b.support = SupportLevel::Community;
        assert_eq!(check(&b, false), Ok(()));
    }

    #[test]
    fn experimental_board_without_opt_in_names_disabled_devices_and_the_fix() {
        let e = check(&fixture::gicv2_experimental(), false).unwrap_err();
        assert_eq!(
            e,
            "board `test-v2` is experimental (disabled devices: gpu: integrated GPU cannot be \
             shared). Opt in with `cargo xtask build --board test-v2 --allow-experimental` or \
             `board!(..., allow_experimental = true)`"
        );
    }

    #[test]
    fn experimental_board_with_opt_in_builds() {
        assert_eq!(check(&fixture::gicv2_experimental(), true), Ok(()));
    }

    #[test]
    fn experimental_board_without_disabled_devices_still_says_why() {
        let mut b = fixture::gicv2_experimental();
        b.devices.retain(|d| d.status == Status::Okay);
        assert!(check(&b, false)
            .unwrap_err()
            .contains("(support level experimental)"));
    }
}
