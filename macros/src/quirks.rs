//! Quirks the board asks for: `QuirkRefDesc` table (matched to quirk plugins at boot).

use crate::lit::slice;
use platform_dsl::model::{Board, QuirkRef};
use proc_macro2::TokenStream;
use quote::quote;

fn quirk(q: &QuirkRef) -> TokenStream {
    let (name, matches) = (&q.name, &q.matches);
    quote!(::hypervisor::platform::QuirkRefDesc { name: #name, matches: #matches })
}

/// `&[QuirkRefDesc]` in declaration order.
pub fn quirks(board: &Board) -> TokenStream {
    slice(board.quirks.iter().map(quirk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::lit::compact;

    #[test]
    fn quirk_keeps_name_and_match() {
        assert_eq!(
            compact(&quirks(&fixture::two_socket())),
            "&[::hypervisor::platform::QuirkRefDesc{name:\"rtl8153-usb-nic\",matches:\"usb:0bda:8153\"}]"
        );
    }

    #[test]
    fn board_without_quirks_has_an_empty_table() {
        let mut b = fixture::two_socket();
        b.quirks.clear();
        assert_eq!(compact(&quirks(&b)), "&[]");
    }
}
