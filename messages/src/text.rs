//! Text hygiene for what goes to the Node (and comes from Enti): pagoPA traced PSPs' garbled
//! `companyName` to an EC that sent `"\n\n"`.

/// Normalises a text: control characters (and the XML noncharacters U+FFFE/U+FFFF) and runs of
/// whitespace become ONE space (two words are never glued together), the ends are trimmed and
/// the result is cut to `max` characters (then trimmed again). Returns the text and whether it
/// changed.
pub fn normalise(s: &str, max: usize) -> (String, bool) {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)));
    let mut pending_space = false;
    let mut count = 0usize;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            if count + 1 >= max {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= max {
            break;
        }
        out.push(c);
        count += 1;
    }
    let changed = out != s;
    (out, changed)
}

/// Whether a text needs [`normalise`] (control characters, leading/trailing or repeated
/// whitespace, longer than `max`).
pub fn needs_normalising(s: &str, max: usize) -> bool {
    normalise(s, max).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_runs_become_one_space() {
        assert_eq!(
            normalise("  Comune\n\ndi\tProva  ", 140).0,
            "Comune di Prova"
        );
        assert_eq!(normalise("TARI\u{0007}2026", 140).0, "TARI 2026");
        assert_eq!(normalise("a\r\n b", 140), ("a b".to_string(), true));
        assert_eq!(normalise("\n\n", 140).0, "");
        assert_eq!(
            normalise("già fatto", 140),
            ("già fatto".to_string(), false)
        );
        assert_eq!(normalise("x\u{FFFE}y", 140).0, "x y");
    }

    #[test]
    fn truncates_to_characters_without_a_trailing_space() {
        assert_eq!(normalise("abc def", 4).0, "abc");
        assert_eq!(normalise("abc def", 5).0, "abc d");
        assert_eq!(normalise("àèìòù", 3).0, "àèì");
        let long = "x".repeat(200);
        assert_eq!(normalise(&long, 140).0.chars().count(), 140);
        assert!(needs_normalising(&long, 140));
        assert!(!needs_normalising("ok", 140));
    }
}
