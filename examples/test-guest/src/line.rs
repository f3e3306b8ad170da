//! Line assembly for the `echo` mode: console bytes in, finished lines out (pure, host-tested).
//!
//! A line ends at `'\r'` or `'\n'` (so `"\r\n"` ends one line and then an empty one, which is
//! not reported); DEL (0x7f) and BS (0x08) remove the last byte kept; a line keeps at most
//! `MAX_LINE` bytes and drops the rest up to its end. Any other byte is kept as it is, and
//! [`Escaped`] prints it readably.

use core::fmt;

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 80;

/// DEL, what most terminals send for the Backspace key.
const DEL: u8 = 0x7f;
/// BS (Ctrl-H).
const BS: u8 = 0x08;

/// A line being typed.
pub struct LineEditor {
    buf: [u8; MAX_LINE],
    len: usize,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An empty line.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_LINE],
            len: 0,
        }
    }

    /// Takes one byte; returns the finished line if `byte` ended a non-empty one.
    pub fn feed(&mut self, byte: u8) -> Option<&[u8]> {
        match byte {
            b'\r' | b'\n' => {
                let len = core::mem::take(&mut self.len);
                (len > 0).then(|| &self.buf[..len])
            }
            DEL | BS => {
                self.len = self.len.saturating_sub(1);
                None
            }
            _ => {
                if let Some(slot) = self.buf.get_mut(self.len) {
                    *slot = byte;
                    self.len += 1;
                }
                None
            }
        }
    }
}

/// Displays bytes as text: printable ASCII as itself, anything else as `\xNN`.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            if byte == b'\\' {
                f.write_str("\\\\")?;
            } else if (0x20..0x7f).contains(&byte) {
                fmt::Write::write_char(f, char::from(byte))?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` byte by byte and collects the lines it finishes, as strings.
    fn lines(input: &[u8]) -> Vec<String> {
        let mut editor = LineEditor::new();
        input
            .iter()
            .filter_map(|&b| editor.feed(b).map(|l| Escaped(l).to_string()))
            .collect()
    }

    #[test]
    fn carriage_return_ends_a_line() {
        assert_eq!(lines(b"hello\roff\r"), ["hello", "off"]);
    }

    #[test]
    fn line_feed_ends_a_line() {
        assert_eq!(lines(b"hello\noff\n"), ["hello", "off"]);
    }

    #[test]
    fn crlf_ends_one_line_not_two() {
        assert_eq!(lines(b"a\r\nb\r\n"), ["a", "b"]);
    }

    #[test]
    fn empty_lines_are_not_reported() {
        assert_eq!(lines(b"\r\r\n\n"), Vec::<String>::new());
    }

    #[test]
    fn unterminated_text_is_not_a_line_yet() {
        assert_eq!(lines(b"done\rpartial"), ["done"]);
    }

    #[test]
    fn del_removes_the_last_byte() {
        assert_eq!(lines(b"helpp\x7f\x7flo\r"), ["hello"]);
    }

    #[test]
    fn backspace_removes_the_last_byte() {
        assert_eq!(lines(b"ofx\x08f\r"), ["off"]);
    }

    #[test]
    fn backspace_on_an_empty_line_does_nothing() {
        assert_eq!(lines(b"\x7f\x08ab\r"), ["ab"]);
    }

    #[test]
    fn a_line_erased_entirely_is_not_reported() {
        assert_eq!(lines(b"ab\x7f\x7f\r"), Vec::<String>::new());
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_kept_whole() {
        let input = [vec![b'a'; MAX_LINE], b"\r".to_vec()].concat();
        assert_eq!(lines(&input), ["a".repeat(MAX_LINE)]);
    }

    #[test]
    fn an_overlong_line_is_cut_at_max_line_bytes() {
        let input = [vec![b'a'; MAX_LINE], b"bcd\rnext\r".to_vec()].concat();
        assert_eq!(lines(&input), ["a".repeat(MAX_LINE), "next".to_string()]);
    }

    #[test]
    fn backspace_after_a_cut_removes_the_last_kept_byte() {
        let input = [vec![b'a'; MAX_LINE - 1], b"bc\x7f\r".to_vec()].concat();
        assert_eq!(lines(&input), ["a".repeat(MAX_LINE - 1)]);
    }

    #[test]
    fn the_editor_is_empty_after_a_line() {
        let mut editor = LineEditor::new();
        for &b in b"first\r" {
            editor.feed(b);
        }
        for &b in b"x" {
            editor.feed(b);
        }
        assert_eq!(editor.feed(b'\r'), Some(&b"x"[..]));
    }

    #[test]
    fn printable_ascii_is_shown_as_itself() {
        assert_eq!(Escaped(b"Hi there ~!").to_string(), "Hi there ~!");
    }

    #[test]
    fn other_bytes_are_shown_as_hex_escapes() {
        assert_eq!(Escaped(b"\x1b[A\xff\t").to_string(), "\\x1b[A\\xff\\x09");
    }

    #[test]
    fn a_backslash_is_doubled_so_escapes_stay_unambiguous() {
        assert_eq!(Escaped(b"a\\x41").to_string(), "a\\\\x41");
    }
}
