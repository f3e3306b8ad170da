//! Wording shared by the stages' messages: "did you mean", hex spelling, lists.

/// Levenshtein distance between two short names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean `x`?" when a known name is close, then the list of known names.
pub fn did_you_mean(name: &str, known: &[&str], what: &str) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .min_by_key(|(d, _)| *d);
    let list = if known.is_empty() {
        format!("there are no {what}")
    } else {
        format!("{what}: {}", known.join(", "))
    };
    match best {
        Some((d, k)) if d <= (name.chars().count() / 3).max(2) => {
            format!("did you mean `{k}`? ({list})")
        }
        _ => list,
    }
}

/// `0x4020_0000`: hex with `_` every four digits, as boards.kdl writes addresses.
pub fn hex(v: u64) -> String {
    let digits = format!("{v:x}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 4 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    format!("0x{out}")
}

/// "`cluster=0`" or "`cluster=` between 0 and 3".
pub fn index_range(prop: &str, count: u32) -> String {
    if count <= 1 {
        format!("`{prop}=0`")
    } else {
        format!("`{prop}=` between 0 and {}", count - 1)
    }
}

/// `"a", "b"`: each name in double quotes, comma-separated.
pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("size", "size"), 0);
        assert_eq!(edit_distance("szie", "size"), 2);
        assert_eq!(edit_distance("sise", "size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn hex_groups_digits_by_four() {
        assert_eq!(hex(0x4020_0000), "0x4020_0000");
        assert_eq!(hex(0x1_0000), "0x1_0000");
        assert_eq!(hex(0x1000), "0x1000");
        assert_eq!(hex(0), "0x0");
    }

    #[test]
    fn suggests_a_close_name() {
        let h = did_you_mean("compatibel", &["compatible", "status"], "properties");
        assert!(h.starts_with("did you mean `compatible`?"), "{h}");
    }

    #[test]
    fn does_not_suggest_a_far_name() {
        let h = did_you_mean("frobnicate", &["size", "name"], "properties");
        assert!(!h.contains("did you mean"), "{h}");
        assert!(h.contains("size, name"), "{h}");
    }
}
