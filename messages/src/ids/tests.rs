//! Property tests for the identifier types. Every check digit is compared with
//! an independent implementation written here (different arithmetic or
//! hand-written tables), never with the production helpers.

use super::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Independent reference implementations
// ---------------------------------------------------------------------------

/// mod 93 via u128 integer arithmetic (SPEC §7.1).
fn ref_mod93(s: &str) -> u8 {
    (s.parse::<u128>().unwrap() % 93) as u8
}

/// Italian VAT check digit, Luhn style with a lookup for the doubled digits.
fn ref_vat(first_ten: &str) -> char {
    const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    let d: Vec<u32> = first_ten.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let odd: u32 = d.iter().step_by(2).sum();
    let even: u32 = d
        .iter()
        .skip(1)
        .step_by(2)
        .map(|&x| DOUBLED[x as usize])
        .sum();
    char::from_digit((10 - (odd + even) % 10) % 10, 10).unwrap()
}

/// Odd-position value, hand-written match (fiscal code / CIN tables).
fn ref_odd(c: char) -> u32 {
    match c {
        '0' | 'A' => 1,
        '1' | 'B' => 0,
        '2' | 'C' => 5,
        '3' | 'D' => 7,
        '4' | 'E' => 9,
        '5' | 'F' => 13,
        '6' | 'G' => 15,
        '7' | 'H' => 17,
        '8' | 'I' => 19,
        '9' | 'J' => 21,
        'K' => 2,
        'L' => 4,
        'M' => 18,
        'N' => 20,
        'O' => 11,
        'P' => 3,
        'Q' => 6,
        'R' => 8,
        'S' => 12,
        'T' => 14,
        'U' => 16,
        'V' => 10,
        'W' => 22,
        'X' => 25,
        'Y' => 24,
        'Z' => 23,
        _ => panic!("bad char {c}"),
    }
}

fn ref_even(c: char) -> u32 {
    if let Some(d) = c.to_digit(10) {
        d
    } else {
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ".find(c).unwrap() as u32
    }
}

/// Check letter with the odd/even tables (1-based positions).
fn ref_check_letter(s: &str) -> char {
    let sum: u32 = s
        .chars()
        .zip(1..)
        .map(|(c, pos)| {
            if pos % 2 == 1 {
                ref_odd(c)
            } else {
                ref_even(c)
            }
        })
        .sum();
    (b'A' + (sum % 26) as u8) as char
}

/// ISO 7064 mod 97 of an already rearranged alphanumeric string: expand to a
/// decimal string, then reduce 9-digit chunks with u64 arithmetic.
fn ref_mod97(rearranged: &str) -> u64 {
    let expanded: String = rearranged
        .chars()
        .map(|c| c.to_digit(36).unwrap().to_string())
        .collect();
    let mut r = 0u64;
    for chunk in expanded.as_bytes().chunks(9) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        r = format!("{r}{chunk}").parse::<u64>().unwrap() % 97;
    }
    r
}

fn ref_iban(country: &str, bban: &str) -> String {
    let cd = 98 - ref_mod97(&format!("{bban}{country}00"));
    format!("{country}{cd:02}{bban}")
}

const OMOCODIA: [char; 10] = ['L', 'M', 'N', 'P', 'Q', 'R', 'S', 'T', 'U', 'V'];

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn org_code() -> impl Strategy<Value = String> {
    "[0-9]{10}".prop_map(|s| format!("{s}{}", ref_vat(&s)))
}

/// A digit, optionally replaced by its omocodia letter.
fn omo_digit(d: u32, omo: bool) -> char {
    if omo {
        OMOCODIA[d as usize]
    } else {
        char::from_digit(d, 10).unwrap()
    }
}

fn person_code() -> impl Strategy<Value = String> {
    (
        "[A-Z]{6}",
        0u32..100,
        prop::sample::select(b"ABCDEHLMPRST".to_vec()),
        prop_oneof![1u32..=31, 41u32..=71],
        "[A-Z]",
        0u32..1000,
        prop::collection::vec(any::<bool>(), 7),
    )
        .prop_map(|(names, year, month, day, place, num, omo)| {
            let mut s = names;
            s.push(omo_digit(year / 10, omo[0]));
            s.push(omo_digit(year % 10, omo[1]));
            s.push(month as char);
            s.push(omo_digit(day / 10, omo[2]));
            s.push(omo_digit(day % 10, omo[3]));
            s.push_str(&place);
            s.push(omo_digit(num / 100, omo[4]));
            s.push(omo_digit(num / 10 % 10, omo[5]));
            s.push(omo_digit(num % 10, omo[6]));
            let cc = ref_check_letter(&s);
            s.push(cc);
            s
        })
}

fn italian_iban() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["IT", "SM"]),
        "[0-9]{5}",
        "[0-9]{5}",
        "[0-9A-Z]{12}",
    )
        .prop_map(|(country, abi, cab, account)| {
            let body = format!("{abi}{cab}{account}");
            let cin = ref_check_letter(&body);
            ref_iban(country, &format!("{cin}{body}"))
        })
}

fn foreign_iban() -> impl Strategy<Value = String> {
    ("[A-Z]{2}", "[0-9A-Z]{11,30}")
        .prop_filter("not IT/SM", |(c, _)| c != "IT" && c != "SM")
        .prop_map(|(c, bban)| ref_iban(&c, &bban))
}

fn layout() -> impl Strategy<Value = NoticeLayout> {
    prop_oneof![
        (0u8..100).prop_map(|application_code| NoticeLayout::Aux0 { application_code }),
        Just(NoticeLayout::Aux1),
        Just(NoticeLayout::Aux2),
        (0u8..100).prop_map(|segregation_code| NoticeLayout::Aux3 { segregation_code }),
    ]
}

fn layout_and_sequence() -> impl Strategy<Value = (NoticeLayout, u64)> {
    layout().prop_flat_map(|l| {
        let cap = 10u64.pow(l.base_width() as u32);
        (Just(l), prop_oneof![0..cap, (cap - 1000)..cap, 0u64..1000])
    })
}

fn json_round_trip<T>(v: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mod93_matches_u128(s in "[0-9]{1,38}") {
        prop_assert_eq!(check_digit(&s).unwrap(), ref_mod93(&s));
    }

    #[test]
    fn org_fiscal_code_valid(code in org_code()) {
        let c = OrgFiscalCode::parse(&code).unwrap();
        prop_assert!(c.check_digit_ok());
        prop_assert_eq!(c.to_string(), code.clone());
        prop_assert_eq!(c.to_string().parse::<OrgFiscalCode>().unwrap(), c.clone());
        prop_assert_eq!(json_round_trip(&c), c.clone());
        prop_assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{code}\""));
        let cd = OrgFiscalCode::compute_check_digit(&code[..10]).unwrap();
        prop_assert_eq!(char::from(b'0' + cd), ref_vat(&code[..10]));
    }

    /// The VAT algorithm detects every single-digit substitution: odd positions
    /// add the digit itself, even positions a bijection of 0..9, and the
    /// check digit position compares directly.
    #[test]
    fn org_fiscal_code_single_substitution_detected(code in org_code(), pos in 0usize..11, delta in 1u8..10) {
        let mut b = code.into_bytes();
        b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
        let mutated = String::from_utf8(b).unwrap();
        prop_assert!(OrgFiscalCode::parse(&mutated).is_err());
        let lenient = OrgFiscalCode::parse_unchecked(&mutated).unwrap();
        prop_assert!(!lenient.check_digit_ok());
    }

    #[test]
    fn person_fiscal_code_valid(code in person_code(), lower in any::<bool>()) {
        let input = if lower { format!(" {} ", code.to_lowercase()) } else { code.clone() };
        let c = PersonFiscalCode::parse(&input).unwrap();
        prop_assert!(c.check_char_ok());
        prop_assert_eq!(c.as_str(), code.as_str());
        prop_assert_eq!(c.to_string().parse::<PersonFiscalCode>().unwrap(), c.clone());
        prop_assert_eq!(json_round_trip(&c), c.clone());
        prop_assert_eq!(
            PersonFiscalCode::compute_check_char(&code[..15]).unwrap(),
            ref_check_letter(&code[..15])
        );
        let day = {
            let dec = |ch: char| ch.to_digit(10).unwrap_or_else(|| OMOCODIA.iter().position(|&o| o == ch).unwrap() as u32);
            let cs: Vec<char> = code.chars().collect();
            dec(cs[9]) * 10 + dec(cs[10])
        };
        prop_assert_eq!(c.is_female(), day > 40);
        let fc = FiscalCode::parse(&input).unwrap();
        prop_assert_eq!(fc, FiscalCode::Person(c));
    }

    /// On every position the table values of the characters the shape allows
    /// there (26 letters, or 10 digits + 10 omocodia letters) are distinct and
    /// below 26, so any substitution that keeps the shape changes the check
    /// letter (or is the check letter itself): strict parse must fail.
    #[test]
    fn person_fiscal_code_single_substitution_detected(
        code in person_code(),
        pos in 0usize..16,
        repl in prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".to_vec()),
    ) {
        let mut b = code.clone().into_bytes();
        prop_assume!(b[pos] != repl);
        b[pos] = repl;
        let mutated = String::from_utf8(b).unwrap();
        if PersonFiscalCode::parse_unchecked(&mutated).is_ok() {
            prop_assert!(PersonFiscalCode::parse(&mutated).is_err(), "{} -> {}", code, mutated);
        }
    }

    #[test]
    fn fiscal_code_enum_round_trip(
        v in prop_oneof![
            org_code(),
            person_code(),
            prop::sample::select(vec!["ANONIMO", "anonimo", "Anonimo"]).prop_map(String::from),
        ]
    ) {
        let fc = FiscalCode::parse(&v).unwrap();
        prop_assert!(fc.check_ok());
        prop_assert_eq!(fc.as_str(), v.to_uppercase());
        prop_assert_eq!(fc.to_string().parse::<FiscalCode>().unwrap(), fc.clone());
        prop_assert_eq!(json_round_trip(&fc), fc.clone());
        prop_assert_eq!(FiscalCode::parse_unchecked(&v).unwrap(), fc);
    }

    #[test]
    fn italian_iban_valid(iban in italian_iban(), spaced in any::<bool>()) {
        let input = if spaced {
            iban.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap().to_lowercase()).collect::<Vec<_>>().join(" ")
        } else {
            iban.clone()
        };
        let i = Iban::parse(&input).unwrap();
        prop_assert_eq!(i.as_str(), iban.as_str());
        prop_assert!(i.is_valid());
        prop_assert_eq!(i.country(), &iban[..2]);
        prop_assert_eq!(Iban::compute_italian_cin(&iban[5..]).unwrap(), ref_check_letter(&iban[5..]));
        prop_assert_eq!(
            Iban::compute_check_digits(&iban[..2], &iban[4..]).unwrap() as u64,
            iban[2..4].parse::<u64>().unwrap()
        );
        prop_assert_eq!(i.to_string().parse::<Iban>().unwrap(), i.clone());
        prop_assert_eq!(json_round_trip(&i), i);
    }

    #[test]
    fn foreign_iban_valid(iban in foreign_iban()) {
        let i = Iban::parse(&iban).unwrap();
        prop_assert_eq!(i.as_str(), iban.as_str());
        prop_assert_eq!(json_round_trip(&i), i);
    }

    /// mod 97 detects every single-digit substitution (97 is prime and coprime
    /// with 10); a digit stays one digit in the expanded string.
    #[test]
    fn iban_single_digit_substitution_detected(iban in prop_oneof![italian_iban(), foreign_iban()], pos in 0usize..34, delta in 1u8..10) {
        let mut b = iban.clone().into_bytes();
        let digit_positions: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
        let pos = digit_positions[pos % digit_positions.len()];
        b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
        let mutated = String::from_utf8(b).unwrap();
        prop_assert!(Iban::parse(&mutated).is_err());
        prop_assert!(!Iban::parse_unchecked(&mutated).unwrap().is_valid());
    }

    /// A wrong CIN letter with correct mod 97 check digits is caught by the CIN.
    #[test]
    fn iban_wrong_cin_detected(iban in italian_iban(), repl in prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ".to_vec())) {
        let country = &iban[..2];
        let body = &iban[5..];
        prop_assume!(repl != iban.as_bytes()[4]);
        let wrong = ref_iban(country, &format!("{}{body}", repl as char));
        let err = Iban::parse(&wrong).unwrap_err();
        let is_cin_mismatch = matches!(err, IdError::CheckMismatch { what: "IBAN CIN", .. });
        prop_assert!(is_cin_mismatch);
    }

    #[test]
    fn numeric_iuv_round_trip(s in prop_oneof!["[0-9]{15}", "[0-9]{17}"]) {
        let i = Iuv::parse(&s).unwrap();
        prop_assert!(i.is_numeric());
        prop_assert_eq!(i.as_str(), s.as_str());
        prop_assert_eq!(i.to_string().parse::<Iuv>().unwrap(), i.clone());
        prop_assert_eq!(json_round_trip(&i), i);
    }

    #[test]
    fn rf_iuv(reference in "[0-9A-Z]{1,21}", pos in 0usize..25, delta in 1u8..10) {
        let rf = Iuv::rf_from_reference(&reference).unwrap();
        // independent: rearranged value mod 97 == 1
        let s = rf.as_str().to_owned();
        prop_assert_eq!(ref_mod97(&format!("{}{}", &s[4..], &s[..4])), 1);
        prop_assert_eq!(Iuv::parse_rf(&s).unwrap(), rf.clone());
        prop_assert_eq!(rf.rf_check_ok(), Some(true));
        prop_assert_eq!(json_round_trip(&rf), rf.clone());
        // single-digit substitution (check digits or reference) is detected
        let mut b = s.into_bytes();
        let digit_positions: Vec<usize> = (2..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
        let pos = digit_positions[pos % digit_positions.len()];
        b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
        let mutated = String::from_utf8(b).unwrap();
        prop_assert!(Iuv::parse_rf(&mutated).is_err());
        prop_assert_eq!(Iuv::parse_unchecked(&mutated).unwrap().rf_check_ok(), Some(false));
    }

    #[test]
    fn generated_notice_numbers((layout, seq) in layout_and_sequence()) {
        let n = layout.generate(seq).unwrap();
        let s = n.as_str().to_owned();
        prop_assert_eq!(s.len(), 18);
        prop_assert_eq!(n.layout(), layout);
        prop_assert_eq!(n.aux_digit(), layout.aux_digit());
        // the base is the zero-padded sequence, right after the prefix
        let prefix_len = if layout.code().is_some() { 3 } else { 1 };
        let base = &s[prefix_len..prefix_len + layout.base_width()];
        prop_assert_eq!(base.parse::<u64>().unwrap(), seq);
        if layout.has_check_digit() {
            prop_assert_eq!(s[16..].parse::<u8>().unwrap(), ref_mod93(&s[..16]));
            prop_assert_eq!(n.check().check_digit, Some((ref_mod93(&s[..16]), ref_mod93(&s[..16]))));
        } else {
            prop_assert_eq!(n.check().check_digit, None);
        }
        prop_assert!(n.check().is_valid());
        // IUV slices of SPEC §7.1
        let iuv = n.iuv();
        let expected_iuv = if layout.aux_digit() == AuxDigit::Zero { &s[3..] } else { &s[1..] };
        prop_assert_eq!(iuv.as_str(), expected_iuv);
        prop_assert_eq!(iuv.as_str().len(), layout.iuv_len());
        prop_assert_eq!(NoticeNumber::from_iuv(&iuv, &layout).unwrap(), n.clone());
        // round trips
        prop_assert_eq!(NoticeNumber::parse(&s).unwrap(), n.clone());
        prop_assert_eq!(s.parse::<NoticeNumber>().unwrap(), n.clone());
        prop_assert_eq!(json_round_trip(&n), n.clone());
        prop_assert_eq!(json_round_trip(&layout), layout);
    }

    /// Single-digit substitution in a notice number with a check digit:
    /// on positions 1..18 it always breaks the check (10^k is invertible mod
    /// 93 = 3·31 and |delta| <= 9 < 93; the last two positions change the
    /// found digit only). On position 0 (aux digit) the result is still valid
    /// only when it becomes aux 1, which has no check digit.
    #[test]
    fn notice_single_substitution(
        (layout, seq) in layout_and_sequence().prop_filter("has a check digit", |(l, _)| l.has_check_digit()),
        pos in 0usize..18,
        delta in 1u8..10,
    ) {
        let n = layout.generate(seq).unwrap();
        let mut b = n.as_str().as_bytes().to_vec();
        b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
        let mutated = String::from_utf8(b).unwrap();
        let strict = NoticeNumber::parse(&mutated);
        if pos == 0 && mutated.starts_with('1') {
            prop_assert!(strict.is_ok());
        } else {
            prop_assert!(strict.is_err());
            if mutated.as_bytes()[0] <= b'3' {
                prop_assert!(!NoticeNumber::parse_unchecked(&mutated).unwrap().check_digit_ok());
            }
        }
    }

    /// The strict parser agrees with the u128 reference on arbitrary input.
    #[test]
    fn notice_parse_agrees_with_reference(s in "[0-3][0-9]{17}") {
        let expected_ok = s.starts_with('1') || s[16..].parse::<u8>().unwrap() == ref_mod93(&s[..16]);
        prop_assert_eq!(NoticeNumber::parse(&s).is_ok(), expected_ok);
        let n = NoticeNumber::parse_unchecked(&s).unwrap();
        prop_assert_eq!(n.check_digit_ok(), expected_ok);
        prop_assert_eq!(json_round_trip(&n), n);
    }

    #[test]
    fn layout_display(layout in layout()) {
        let text = layout.to_string();
        match layout {
            NoticeLayout::Aux0 { application_code } => prop_assert_eq!(text, format!("aux 0, application code {application_code:02}")),
            NoticeLayout::Aux3 { segregation_code } => prop_assert_eq!(text, format!("aux 3, segregation code {segregation_code:02}")),
            NoticeLayout::Aux1 => prop_assert_eq!(text, "aux 1"),
            NoticeLayout::Aux2 => prop_assert_eq!(text, "aux 2"),
        }
    }

    #[test]
    fn amount_round_trip(cents in prop_oneof![0i64..=99_999_999_999, 0i64..1000, 99_999_999_000i64..=99_999_999_999]) {
        let a = Amount::from_cents(cents).unwrap();
        // independent rendering: pad to at least 3 digits and insert the dot
        let padded = format!("{cents:03}");
        let (int, frac) = padded.split_at(padded.len() - 2);
        let text = format!("{int}.{frac}");
        prop_assert_eq!(a.to_decimal_string(), text.clone());
        prop_assert_eq!(a.to_string(), text.clone());
        prop_assert_eq!(Amount::parse_decimal(&text).unwrap(), a);
        prop_assert_eq!(text.parse::<Amount>().unwrap(), a);
        prop_assert_eq!(Amount::parse_decimal_lenient(&text).unwrap(), a);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), cents.to_string());
        prop_assert_eq!(json_round_trip(&a), a);
        // lenient short forms
        if cents % 100 == 0 {
            prop_assert_eq!(Amount::parse_decimal_lenient(int).unwrap(), a);
            prop_assert!(Amount::parse_decimal(int).is_err());
        }
        if cents % 10 == 0 {
            let one = format!("{int}.{}", &frac[..1]);
            prop_assert_eq!(Amount::parse_decimal_lenient(&one).unwrap(), a);
            prop_assert!(Amount::parse_decimal(&one).is_err());
        }
    }

    #[test]
    fn amount_out_of_range(cents in prop_oneof![i64::MIN..0, 100_000_000_000i64..=i64::MAX]) {
        prop_assert!(Amount::from_cents(cents).is_err());
        prop_assert!(serde_json::from_str::<Amount>(&cents.to_string()).is_err());
    }

    #[test]
    fn amount_arithmetic(a in 0i64..=99_999_999_999, b in 0i64..=99_999_999_999) {
        let (x, y) = (Amount::from_cents(a).unwrap(), Amount::from_cents(b).unwrap());
        prop_assert_eq!(x.checked_add(y).map(Amount::cents), (a + b <= 99_999_999_999).then_some(a + b));
        prop_assert_eq!(x.checked_sub(y).map(Amount::cents), (a >= b).then_some(a - b));
        prop_assert_eq!(Amount::checked_sum([x, y]), x.checked_add(y));
    }
}

#[test]
fn openapi_schemas() {
    use utoipa::PartialSchema;
    let ty = |s: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
        serde_json::to_value(s).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(ty(OrgFiscalCode::schema()), "string");
    assert_eq!(ty(PersonFiscalCode::schema()), "string");
    assert_eq!(ty(FiscalCode::schema()), "string");
    assert_eq!(ty(Iban::schema()), "string");
    assert_eq!(ty(Iuv::schema()), "string");
    assert_eq!(ty(NoticeNumber::schema()), "string");
    assert_eq!(ty(Amount::schema()), "integer");
    assert_eq!(ty(AuxDigit::schema()), "integer");
    let layout = serde_json::to_value(NoticeLayout::schema()).unwrap();
    assert_eq!(layout["type"], "object");
    assert_eq!(layout["required"], serde_json::json!(["auxDigit"]));
    assert!(layout["properties"]["segregationCode"].is_object());
    let nav = serde_json::to_value(NoticeNumber::schema()).unwrap();
    assert_eq!(nav["pattern"], "^[0-3][0-9]{17}$");
}

#[test]
fn error_messages_are_plain_english() {
    assert_eq!(
        OrgFiscalCode::parse("123").unwrap_err().to_string(),
        "organization fiscal code must be 11 digits"
    );
    assert_eq!(
        Iban::parse("IT61X0542811101000000123456")
            .unwrap_err()
            .to_string(),
        "IBAN check digits do not match (mod 97)"
    );
    assert_eq!(
        NoticeNumber::parse("312202600000000142")
            .unwrap_err()
            .to_string(),
        "notice number check digit is 42, expected 71"
    );
    assert_eq!(
        NoticeLayout::Aux3 {
            segregation_code: 12
        }
        .generate(10_000_000_000_000)
        .unwrap_err()
        .to_string(),
        "notice sequence 10000000000000 is out of range (0..=9999999999999)"
    );
    assert_eq!(
        Amount::from_cents(-5).unwrap_err().to_string(),
        "amount in cents -5 is out of range (0..=99999999999)"
    );
}
