//! The reference inside a bank credit's remittance text (AT-05, SPEC §9.4): the flow id of a
//! pagoPA settlement (`/PUR/LGPE-RIVERSAMENTO/TXT/<prog>/URI/<flow id>`, the older form
//! without `TXT`, `LGPE-INTEGRAZIONE` shortfall credits) or the IUV of a historical
//! single-payment credit (`/RFB/<IUV>…`, `/RFS/<RF-IUV>…`).
//!
//! Real bank data is tolerated: keywords in any case, tags without their slashes, prefixes
//! (`RI1/`, `ACCREDITI VARI`), and spaces that treasury software inserts inside the id. Since
//! free text may follow the id, spaces are never blindly removed: the first token is the first
//! candidate, then the first token with the next ones glued on (up to 35 characters); the
//! caller keeps the first candidate that names a flow it knows ([`Reference::flow_id`]).

/// Longest flow id (`identificativoFlusso`).
pub const MAX_FLOW_ID: usize = 35;

/// What a remittance text refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A pagoPA settlement of a reporting flow.
    Flow {
        /// Candidate flow ids, most likely first (see the module docs).
        candidates: Vec<String>,
        /// `LGPE-INTEGRAZIONE`: a shortfall integration of the flow.
        integration: bool,
        /// `TXT/<prog>`: 0 = the ordinary credit, 1–9 = integrative credits of the same day.
        prog: Option<u8>,
    },
    /// A historical single-payment credit.
    SinglePayment {
        /// The IUV (an `RF…` creditor reference for `RFS`).
        iuv: String,
        /// `RFS` (ISO 11649 reference) rather than `RFB` (numeric IUV).
        creditor_reference: bool,
    },
}

impl Reference {
    /// The first candidate flow id that `known` accepts.
    pub fn flow_id(&self, known: impl Fn(&str) -> bool) -> Option<&str> {
        match self {
            Self::Flow { candidates, .. } => {
                candidates.iter().map(String::as_str).find(|c| known(c))
            }
            Self::SinglePayment { .. } => None,
        }
    }

    /// Every flow id it may name, most likely first (none for a single-payment credit).
    pub fn candidates(&self) -> &[String] {
        match self {
            Self::Flow { candidates, .. } => candidates,
            Self::SinglePayment { .. } => &[],
        }
    }

    /// The most likely flow id when no flow is known yet (the first token).
    pub fn first_candidate(&self) -> Option<&str> {
        match self {
            Self::Flow { candidates, .. } => candidates.first().map(String::as_str),
            Self::SinglePayment { .. } => None,
        }
    }
}

fn is_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Case-insensitive ASCII match of `word` at `at`.
fn word_at(cs: &[char], at: usize, word: &str) -> bool {
    let n = word.chars().count();
    cs.get(at..at + n).is_some_and(|s| {
        s.iter()
            .zip(word.chars())
            .all(|(a, b)| a.eq_ignore_ascii_case(&b))
    })
}

/// Skips separators (anything that is neither a letter nor a digit).
fn skip_separators(cs: &[char], mut i: usize) -> usize {
    while cs.get(i).is_some_and(|c| !c.is_ascii_alphanumeric()) {
        i += 1;
    }
    i
}

fn token_end(cs: &[char], mut i: usize) -> usize {
    while cs.get(i).copied().is_some_and(is_token) {
        i += 1;
    }
    i
}

/// The anchor `L ?GPE ?- ?(RIVERSAMENTO|INTEGRAZIONE)` at `i` (single spaces tolerated, any
/// case): the index after it and whether it is an integration.
fn anchor_at(cs: &[char], i: usize) -> Option<(usize, bool)> {
    let space = |j: usize| if cs.get(j) == Some(&' ') { j + 1 } else { j };
    if !word_at(cs, i, "L") {
        return None;
    }
    let mut j = space(i + 1);
    if !word_at(cs, j, "GPE") {
        return None;
    }
    j = space(j + 3);
    if cs.get(j) != Some(&'-') {
        return None;
    }
    j = space(j + 1);
    if word_at(cs, j, "RIVERSAMENTO") {
        Some((j + "RIVERSAMENTO".len(), false))
    } else if word_at(cs, j, "INTEGRAZIONE") {
        Some((j + "INTEGRAZIONE".len(), true))
    } else {
        None
    }
}

/// Reads the reference of a remittance text, if it has one. Whitespace runs (newlines, tabs,
/// pretty-printing) count as one space. When the text names a flow more than once (banks
/// repeat it, once broken), the candidates of every occurrence are kept, in order.
pub fn parse(text: &str) -> Option<Reference> {
    let mut cs: Vec<char> = Vec::with_capacity(text.len());
    for c in text.trim().chars() {
        if c.is_whitespace() {
            if cs.last() != Some(&' ') {
                cs.push(' ');
            }
        } else {
            cs.push(c);
        }
    }
    let mut found: Option<Reference> = None;
    for start in 0..cs.len() {
        let Some((end, integration)) = anchor_at(&cs, start) else {
            continue;
        };
        if let Some(Reference::Flow {
            candidates: more, ..
        }) = flow_after(&cs, end, integration)
        {
            match &mut found {
                Some(Reference::Flow { candidates, .. }) => {
                    for c in more {
                        if !candidates.contains(&c) {
                            candidates.push(c);
                        }
                    }
                }
                _ => found = flow_after(&cs, end, integration),
            }
        }
    }
    found.or_else(|| single_payment(&cs))
}

fn flow_after(cs: &[char], from: usize, integration: bool) -> Option<Reference> {
    let mut i = skip_separators(cs, from);
    let mut prog = None;
    if word_at(cs, i, "TXT") {
        i = skip_separators(cs, i + 3);
        let d = cs.get(i).and_then(|c| c.to_digit(10))?;
        prog = u8::try_from(d).ok();
        i = skip_separators(cs, i + 1);
    }
    if !word_at(cs, i, "URI") {
        return None;
    }
    i = skip_separators(cs, i + 3);
    let end = token_end(cs, i);
    if end == i {
        return None;
    }
    let mut candidate: String = cs.get(i..end)?.iter().collect();
    let mut candidates = vec![candidate.clone()];
    let mut j = end;
    // glue the next space-separated tokens while the id could still be that long
    loop {
        let mut k = j;
        while cs.get(k) == Some(&' ') {
            k += 1;
        }
        if k == j {
            break;
        }
        let e = token_end(cs, k);
        if e == k {
            break;
        }
        let next: String = cs.get(k..e)?.iter().collect();
        if candidate.len() + next.len() > MAX_FLOW_ID {
            break;
        }
        candidate.push_str(&next);
        candidates.push(candidate.clone());
        j = e;
    }
    Some(Reference::Flow {
        candidates,
        integration,
        prog,
    })
}

fn single_payment(cs: &[char]) -> Option<Reference> {
    for start in 0..cs.len() {
        let creditor_reference = if word_at(cs, start, "RFB") {
            false
        } else if word_at(cs, start, "RFS") {
            true
        } else {
            continue;
        };
        let boundary = start == 0
            || cs
                .get(start - 1)
                .is_some_and(|c| !c.is_ascii_alphanumeric());
        // exactly one separator between the tag and the IUV
        let sep = cs.get(start + 3).is_some_and(|c| !is_token(*c));
        if !boundary || !sep {
            continue;
        }
        let from = start + 4;
        let end = token_end(cs, from);
        if end > from {
            return Some(Reference::SinglePayment {
                iuv: cs.get(from..end)?.iter().collect(),
                creditor_reference,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "2026-07-0388888888888-S0000001";

    fn id_of(text: &str) -> Option<String> {
        parse(text).and_then(|r| r.flow_id(|c| c == ID).map(str::to_string))
    }

    #[test]
    fn the_current_and_older_forms() {
        for text in [
            "/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/2026-07-0388888888888-S0000001",
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001",
            "PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001",
            "RI1/PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001",
            "ACCREDITI VARI LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001 ACCREDITO BOLLETTINO P.A.",
            "/pur/lgpe-riversamento/uri/2026-07-0388888888888-S0000001",
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-07-03 88888888888-S0000001",
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888 888888-S00 00001",
            "LGPE - RIVERSAMENTO/URI/2026-07-0388888888888-S0000001",
            "L GPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001",
            "YYY17032021 RI1/PUR/LGPE-RIVERSAMENTO/URI/20 26-07-0388888888888-S0000001 BONIFICO A VOSTRO FAVORE PER /PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001",
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-0\n   7-0388888888888-S0000001\tACCREDITO",
        ] {
            assert_eq!(id_of(text).as_deref(), Some(ID), "{text}");
        }
        let r = parse("/PUR/LGPE-INTEGRAZIONE/TXT/3/URI/2026-07-0388888888888-S0000001").unwrap();
        assert_eq!(
            r,
            Reference::Flow {
                candidates: vec![ID.to_string()],
                integration: true,
                prog: Some(3)
            }
        );
    }

    #[test]
    fn free_text_after_the_id_is_not_glued_when_the_id_is_known() {
        let r = parse("/PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000001 ACCREDITO P.A.")
            .unwrap();
        assert_eq!(r.first_candidate(), Some(ID));
        assert_eq!(r.flow_id(|c| c == ID), Some(ID));
        assert_eq!(r.flow_id(|_| false), None);
    }

    #[test]
    fn legacy_single_payments() {
        assert_eq!(
            parse("/RFB/01234567890123456/150.00/TXT/TARI"),
            Some(Reference::SinglePayment {
                iuv: "01234567890123456".into(),
                creditor_reference: false
            })
        );
        assert_eq!(
            parse("/RFS/RF23ABC123/10.00"),
            Some(Reference::SinglePayment {
                iuv: "RF23ABC123".into(),
                creditor_reference: true
            })
        );
        assert_eq!(parse("PAGAMENTO FATTURA 12/2026"), None);
        assert_eq!(parse("/PUR/LGPE-RIVERSAMENTO/URI/"), None);
        assert_eq!(parse("SURFBOARD RENTAL"), None);
    }

    fn flow_id() -> impl Strategy<Value = String> {
        (
            2015u32..2030,
            1u32..13,
            1u32..29,
            "[0-9]{11}",
            "[A-Za-z0-9]{1,8}",
        )
            .prop_map(|(y, m, d, psp, uid)| format!("{y:04}-{m:02}-{d:02}{psp}-{uid}"))
    }

    proptest! {
        /// The extractor finds the id under random prefixes, missing slashes, an optional
        /// `TXT/<prog>`, spaces inserted inside the id and free text after it.
        #[test]
        fn the_flow_id_is_found_whatever_the_bank_did(
            id in flow_id(),
            prefix in prop::sample::select(vec!["", "/", "RI1/", "ACCREDITI VARI ", "BONIFICO DA PSP "]),
            pur in any::<bool>(),
            seps in prop::collection::vec(prop::sample::select(vec!["/", "", " /"]), 4),
            prog in prop::option::of(0u8..10),
            cuts in prop::collection::vec(1usize..30, 0..3),
            suffix in prop::sample::select(vec!["", " ACCREDITO BOLLETTINO P.A.", " ", "/"]),
            lower in any::<bool>(),
        ) {
            let mut spaced = id.clone();
            let mut cuts = cuts;
            cuts.sort_unstable();
            cuts.dedup();
            for c in cuts.iter().rev() {
                if *c < spaced.len() {
                    spaced.insert(*c, ' ');
                }
            }
            let mut head = String::from(prefix);
            if pur {
                head.push_str("PUR");
                head.push_str(seps[0]);
            }
            head.push_str("LGPE-RIVERSAMENTO");
            head.push_str(seps[1]);
            if let Some(p) = prog {
                head.push_str("TXT");
                head.push_str(seps[2]);
                head.push_str(&p.to_string());
                head.push('/');
            }
            head.push_str("URI");
            head.push_str(seps[3]);
            if lower {
                head = head.to_lowercase();
            }
            let text = format!("{head}{spaced}{suffix}");
            let r = parse(&text);
            prop_assert!(r.is_some(), "{}", text);
            let r = r.unwrap();
            prop_assert_eq!(r.flow_id(|c| c == id), Some(id.as_str()), "{}", text);
            if let Reference::Flow { prog: got, .. } = &r {
                prop_assert_eq!(*got, prog, "{}", text);
            }
        }
    }
}
