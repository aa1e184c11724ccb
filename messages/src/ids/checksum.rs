//! Check-digit arithmetic shared by several identifiers (crate-private).
//!
//! Everything here works on ASCII bytes and returns `None` on a character the
//! algorithm does not define, so callers never index or panic.

/// Values of the "odd position" table of the Italian fiscal-code check
/// character (and of the bank CIN), for `A..=Z`; digits `0..=9` use the values
/// of `A..=J`. Source: DM 23/12/1976 (codice fiscale), CIN: ABI circolare.
const ODD_TABLE: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// Value of an upper-case ASCII alphanumeric at an odd 1-based position.
fn odd_value(b: u8) -> Option<u32> {
    let idx = match b {
        b'0'..=b'9' => b - b'0',
        b'A'..=b'Z' => b - b'A',
        _ => return None,
    };
    ODD_TABLE.get(usize::from(idx)).copied()
}

/// Value of an upper-case ASCII alphanumeric at an even 1-based position:
/// the digit value, or the letter index `A = 0 .. Z = 25`.
fn even_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        _ => None,
    }
}

/// The odd/even-table check letter used by the personal fiscal code (over its
/// first 15 characters) and by the Italian bank CIN (over ABI+CAB+account,
/// 22 characters): sum the table values, `sum % 26` → `A..=Z`.
/// `None` if a byte is not an upper-case ASCII alphanumeric.
pub(crate) fn odd_even_check_letter(bytes: &[u8]) -> Option<char> {
    let mut sum: u32 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // `i` is 0-based, so even `i` = odd 1-based position.
        let v = if i % 2 == 0 {
            odd_value(b)?
        } else {
            even_value(b)?
        };
        sum += v;
    }
    let idx = u8::try_from(sum % 26).ok()?;
    Some(char::from(b'A' + idx))
}

/// ISO 7064 mod 97-10 remainder of an alphanumeric string whose letters are
/// expanded to `A = 10 .. Z = 35` (IBAN, ISO 11649 RF). `None` on any other
/// character or on an empty string.
pub(crate) fn mod97(chars: impl Iterator<Item = u8>) -> Option<u32> {
    let mut r: u32 = 0;
    let mut any = false;
    for b in chars {
        any = true;
        match b {
            b'0'..=b'9' => r = (r * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => r = (r * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return None,
        }
    }
    any.then_some(r)
}

/// True when every byte is an ASCII digit and there is at least one.
pub(crate) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Value of two ASCII digits, `None` otherwise.
pub(crate) fn two_digits(s: &str) -> Option<u8> {
    let mut it = s.bytes();
    let (a, b) = (it.next()?, it.next()?);
    if it.next().is_some() || !a.is_ascii_digit() || !b.is_ascii_digit() {
        return None;
    }
    Some((a - b'0') * 10 + (b - b'0'))
}
