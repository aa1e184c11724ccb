//! Notice numbers (NAV, SPEC §7.1): aux digit 3 + segregation code + 13-digit base + mod-93 check.

use rand::Rng;

/// Check digits for aux digit 3: `(aux + segregation + base) mod 93`, two digits.
pub fn check_digits(first16: &str) -> Option<String> {
    if first16.len() != 16 || !first16.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = first16.parse().ok()?;
    Some(format!("{:02}", n % 93))
}

/// A random aux-3 NAV with this segregation code (two digits) and a valid check digit.
pub fn random_nav<R: Rng + ?Sized>(segregation: &str, rng: &mut R) -> Option<String> {
    if segregation.len() != 2 || !segregation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base: u64 = rng.random_range(0..10_000_000_000_000u64);
    let first16 = format!("3{segregation}{base:013}");
    let cd = check_digits(&first16)?;
    Some(format!("{first16}{cd}"))
}

/// The segregation code of an aux-3 NAV (its digits 2–3).
pub fn segregation_of(nav: &str) -> Option<&str> {
    if nav.len() == 18 && nav.starts_with('3') {
        nav.get(1..3)
    } else {
        None
    }
}

/// The IUV of an aux-3 NAV (the NAV without the aux digit).
pub fn iuv_of(nav: &str) -> Option<&str> {
    if nav.len() == 18 && nav.starts_with('3') {
        nav.get(1..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn examples_check_digits() {
        for nav in [
            "312202600000000171",
            "312202600000000272",
            "312202600000000373",
        ] {
            assert_eq!(check_digits(&nav[..16]).as_deref(), Some(&nav[16..]));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = random_nav("12", &mut rng).unwrap();
        assert_eq!(n.len(), 18);
        assert_eq!(segregation_of(&n), Some("12"));
        assert_eq!(check_digits(&n[..16]).as_deref(), Some(&n[16..]));
    }
}
