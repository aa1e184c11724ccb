//! The machine-readable parts of a notice, as pure functions: the QR payload, the Poste Data
//! Matrix payload (SPEC §8), the ASCII folding the Data Matrix needs and the printed forms of a
//! notice number and an amount.

use crate::DocumentError;

/// Length of the Poste Data Matrix payload.
pub const DATAMATRIX_LEN: usize = 256;
/// Where the notice number sits in the Data Matrix payload (0-based, end exclusive).
pub const DM_NAV: std::ops::Range<usize> = 15..33;
/// Where the amount in cents (10 digits) sits in the Data Matrix payload.
pub const DM_AMOUNT: std::ops::Range<usize> = 49..59;
/// Where the organization's fiscal code sits in the Data Matrix payload.
pub const DM_EC: std::ops::Range<usize> = 66..77;

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an 18-digit notice number (NAV).
pub fn check_nav(nav: &str) -> Result<(), DocumentError> {
    if nav.len() == 18 && all_digits(nav) {
        Ok(())
    } else {
        Err(DocumentError::InvalidNoticeNumber(nav.to_owned()))
    }
}

/// Checks an 11-digit organization fiscal code.
pub fn check_ec(cf: &str) -> Result<(), DocumentError> {
    if cf.len() == 11 && all_digits(cf) {
        Ok(())
    } else {
        Err(DocumentError::InvalidOrganization(cf.to_owned()))
    }
}

fn check_amount(cents: i64, max_digits: u32) -> Result<(), DocumentError> {
    if cents > 0 && cents < 10_i64.pow(max_digits) {
        Ok(())
    } else {
        Err(DocumentError::InvalidAmount(cents))
    }
}

/// The QR code payload of a notice: `PAGOPA|002|<NAV>|<EC CF>|<cents>` (amount unpadded).
pub fn qr_payload(
    nav: &str,
    ec_fiscal_code: &str,
    amount_cents: i64,
) -> Result<String, DocumentError> {
    check_nav(nav)?;
    check_ec(ec_fiscal_code)?;
    check_amount(amount_cents, 10)?;
    Ok(format!("PAGOPA|002|{nav}|{ec_fiscal_code}|{amount_cents}"))
}

/// What the Poste Data Matrix carries.
#[derive(Debug, Clone, Copy)]
pub struct PostalFields<'a> {
    /// Notice number (18 digits).
    pub nav: &'a str,
    /// Postal current account number (digits, at most 12; zero-left-padded).
    pub postal_account: &'a str,
    /// Amount in cents.
    pub amount_cents: i64,
    /// The organization's fiscal code (11 digits).
    pub ec_fiscal_code: &'a str,
    /// The debtor's fiscal code (at most 16 characters after folding).
    pub debtor_fiscal_code: &'a str,
    /// The debtor's name (folded, cut at 40).
    pub debtor_name: &'a str,
    /// The subject (causale; folded, cut at 110).
    pub subject: &'a str,
}

/// The 256-character Poste Data Matrix payload, laid out as SPEC §8 says:
/// `codfase=NBPA;` `18`+NAV `12`+account(12) `10`+cents(10) `3896` `1P1` EC(11) debtor CF(16)
/// debtor name(40) subject(110) 12 spaces `A`. Text is ASCII-folded ([`ascii_fold`]) and cut to
/// its field, so any name prints.
pub fn datamatrix_payload(f: &PostalFields<'_>) -> Result<String, DocumentError> {
    check_nav(f.nav)?;
    check_ec(f.ec_fiscal_code)?;
    check_amount(f.amount_cents, 10)?;
    let account = f.postal_account.trim();
    if !all_digits(account) || account.len() > 12 {
        return Err(DocumentError::InvalidPostalAccount(
            f.postal_account.to_owned(),
        ));
    }
    let mut out = String::with_capacity(DATAMATRIX_LEN);
    out.push_str("codfase=NBPA;");
    out.push_str("18");
    out.push_str(f.nav);
    out.push_str("12");
    out.push_str(&format!("{account:0>12}"));
    out.push_str("10");
    out.push_str(&format!("{:010}", f.amount_cents));
    out.push_str("3896");
    out.push_str("1P1");
    out.push_str(f.ec_fiscal_code);
    out.push_str(&fixed(&f.debtor_fiscal_code.to_uppercase(), 16));
    out.push_str(&fixed(f.debtor_name, 40));
    out.push_str(&fixed(f.subject, 110));
    out.push_str(&" ".repeat(12));
    out.push('A');
    debug_assert_eq!(out.len(), DATAMATRIX_LEN);
    if out.len() == DATAMATRIX_LEN {
        Ok(out)
    } else {
        Err(DocumentError::Layout(format!(
            "Data Matrix payload of {} characters",
            out.len()
        )))
    }
}

/// Folds to `width` ASCII characters: folded, cut, right-padded with spaces.
fn fixed(text: &str, width: usize) -> String {
    let folded = ascii_fold(text);
    let mut out: String = folded.chars().take(width).collect();
    while out.len() < width {
        out.push(' ');
    }
    out
}

/// Printable ASCII for channels that need it (the Data Matrix): typographic quotes and dashes
/// become `'`, `"`, `-`; an accented Italian vowel becomes the vowel and an apostrophe
/// (`à` → `a'`, as Italian is typed without accents); anything else is transliterated
/// (`deunicode`), and what has no transliteration becomes `?`. Control characters become spaces.
pub fn ascii_fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c),
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{00B4}' => {
                out.push('\'')
            }
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}' | '\u{2033}' => {
                out.push('"')
            }
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            'à' | 'á' => out.push_str("a'"),
            'è' | 'é' => out.push_str("e'"),
            'ì' | 'í' => out.push_str("i'"),
            'ò' | 'ó' => out.push_str("o'"),
            'ù' | 'ú' => out.push_str("u'"),
            'À' | 'Á' => out.push_str("A'"),
            'È' | 'É' => out.push_str("E'"),
            'Ì' | 'Í' => out.push_str("I'"),
            'Ò' | 'Ó' => out.push_str("O'"),
            'Ù' | 'Ú' => out.push_str("U'"),
            c if c.is_control() || c.is_whitespace() => out.push(' '),
            c => match deunicode::deunicode_char(c) {
                Some(t) if !t.is_empty() && t.chars().all(|x| (' '..='~').contains(&x)) => {
                    out.push_str(t)
                }
                _ => out.push('?'),
            },
        }
    }
    out
}

/// A notice number as printed: groups of four digits (`3122 0260 0000 0001 71`).
pub fn format_notice_number(nav: &str) -> String {
    let mut out = String::with_capacity(nav.len() + nav.len() / 4);
    for (i, c) in nav.chars().enumerate() {
        if i > 0 && i.is_multiple_of(4) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// An amount in cents as Italian text: `1.234,56 €`.
pub fn format_euro(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let euros = (abs / 100).to_string();
    let mut grouped = String::with_capacity(euros.len() + euros.len() / 3);
    for (i, c) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped},{:02} €", abs % 100)
}

/// The postal current account of an Italian IBAN held at Poste Italiane (ABI `07601`): the last
/// 12 characters; `None` for any other IBAN.
pub fn postal_account_from_iban(iban: &str) -> Option<String> {
    let compact: String = iban
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    if compact.len() != 27 || !compact.starts_with("IT") || compact.get(5..10) != Some("07601") {
        return None;
    }
    let account = compact.get(15..27)?;
    all_digits(account).then(|| account.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn qr_payload_is_the_spec_example() {
        assert_eq!(
            qr_payload("312202600000000171", "77777777777", 15000).unwrap(),
            "PAGOPA|002|312202600000000171|77777777777|15000"
        );
    }

    #[test]
    fn qr_payload_refuses_bad_input() {
        assert!(matches!(
            qr_payload("31220260000000017", "77777777777", 1),
            Err(DocumentError::InvalidNoticeNumber(_))
        ));
        assert!(matches!(
            qr_payload("312202600000000171", "7777777777A", 1),
            Err(DocumentError::InvalidOrganization(_))
        ));
        assert!(matches!(
            qr_payload("312202600000000171", "77777777777", 0),
            Err(DocumentError::InvalidAmount(0))
        ));
    }

    fn postal<'a>(name: &'a str, subject: &'a str) -> PostalFields<'a> {
        PostalFields {
            nav: "312202600000000171",
            postal_account: "1234567",
            amount_cents: 15000,
            ec_fiscal_code: "77777777777",
            debtor_fiscal_code: "dsmnna80a41h501x",
            debtor_name: name,
            subject,
        }
    }

    #[test]
    fn datamatrix_payload_has_the_spec_offsets() {
        let p = datamatrix_payload(&postal("Anna D’Esempio", "TARI 2026 città")).unwrap();
        assert_eq!(p.len(), 256);
        assert!(p.is_ascii());
        assert_eq!(&p[..13], "codfase=NBPA;");
        assert_eq!(&p[13..15], "18");
        assert_eq!(&p[DM_NAV], "312202600000000171");
        assert_eq!(&p[33..35], "12");
        assert_eq!(&p[35..47], "000001234567");
        assert_eq!(&p[47..49], "10");
        assert_eq!(&p[DM_AMOUNT], "0000015000");
        assert_eq!(&p[59..63], "3896");
        assert_eq!(&p[63..66], "1P1");
        assert_eq!(&p[DM_EC], "77777777777");
        assert_eq!(&p[77..93], "DSMNNA80A41H501X");
        assert_eq!(&p[93..133], format!("{:<40}", "Anna D'Esempio"));
        assert_eq!(&p[133..243], format!("{:<110}", "TARI 2026 citta'"));
        assert_eq!(&p[243..255], " ".repeat(12));
        assert_eq!(&p[255..], "A");
    }

    #[test]
    fn datamatrix_payload_cuts_long_texts_to_their_fields() {
        let long = "è".repeat(200);
        let p = datamatrix_payload(&postal(&long, &long)).unwrap();
        assert_eq!(p.len(), 256);
        assert_eq!(&p[93..133], "e'".repeat(20));
        assert_eq!(&p[DM_EC], "77777777777");
        assert_eq!(&p[255..], "A");
    }

    #[test]
    fn datamatrix_payload_refuses_a_bad_account() {
        let mut f = postal("x", "y");
        f.postal_account = "1234567890123";
        assert!(matches!(
            datamatrix_payload(&f),
            Err(DocumentError::InvalidPostalAccount(_))
        ));
        f.postal_account = "12AB";
        assert!(datamatrix_payload(&f).is_err());
    }

    #[test]
    fn ascii_folding() {
        assert_eq!(ascii_fold("Anna D’Esempio"), "Anna D'Esempio");
        assert_eq!(ascii_fold("città perché Più"), "citta' perche' Piu'");
        assert_eq!(ascii_fold("«Straße» – Ærø\tü"), "\"Strasse\" - AEro u");
        assert_eq!(ascii_fold("漢").trim(), "Han");
        assert!(ascii_fold("🦀 \u{0}").is_ascii());
    }

    #[test]
    fn printed_forms() {
        assert_eq!(
            format_notice_number("312202600000000171"),
            "3122 0260 0000 0001 71"
        );
        assert_eq!(format_euro(15000), "150,00 €");
        assert_eq!(format_euro(123456789), "1.234.567,89 €");
        assert_eq!(format_euro(5), "0,05 €");
        assert_eq!(format_euro(100000), "1.000,00 €");
    }

    #[test]
    fn postal_account_of_a_poste_iban() {
        assert_eq!(
            postal_account_from_iban("IT60 X076 0103 2000 0000 1234 567").as_deref(),
            Some("000001234567")
        );
        assert_eq!(
            postal_account_from_iban("IT60X0542811101000000123456"),
            None
        );
        assert_eq!(postal_account_from_iban("IT60X07601"), None);
    }
}
