//! OPI "giornale di cassa" (SIOPE+), 1.4 to 1.8 (no namespace, no version marker; every
//! enumeration read as an open string): the credits are `ENTRATA` + `SOSPESO ENTRATA`
//! movements, `ESEGUITO` as new money and `STORNATO` as a (possibly partial) reversal;
//! `REGOLARIZZATO` / `RIPRISTINATO` are accounting states, not money. The `ds:Signature` is
//! skipped.

use super::walk::{walk, Step};
use super::{cents_of, Credit, Format, Statement, StatementError};
use crate::fdr::business_day;

#[derive(Default)]
struct Movement {
    kind: String,
    document: String,
    operation: String,
    number: Option<String>,
    amount: Option<String>,
    receipt_number: Option<String>,
    date: Option<String>,
    value_date: Option<String>,
    end_to_end: Option<String>,
    payer: Option<String>,
    causale: Option<String>,
}

pub(super) fn decode(text: &str) -> Result<Statement, StatementError> {
    let mut out = Statement {
        format: Format::Opi,
        credits: Vec::new(),
        skipped: 0,
        problems: Vec::new(),
    };
    let mut account = String::new();
    let mut movement: Option<Movement> = None;
    walk(text, |step| {
        match step {
            Step::Open(path) => {
                if path.last().map(String::as_str) == Some("movimento_conto_evidenza") {
                    movement = Some(Movement::default());
                }
            }
            Step::Close(path, value) => {
                let leaf = path.last().map(String::as_str).unwrap_or_default();
                let parent = path
                    .len()
                    .checked_sub(2)
                    .and_then(|i| path.get(i))
                    .map(String::as_str)
                    .unwrap_or_default();
                if leaf == "conto_evidenza" && parent == "informazioni_conto_evidenza" {
                    account = value.to_string();
                    return Ok(());
                }
                let Some(m) = movement.as_mut() else {
                    return Ok(());
                };
                let v = || Some(value.to_string());
                match (parent, leaf) {
                    (_, "movimento_conto_evidenza") => {
                        if let Some(m) = movement.take() {
                            finish(&mut out, &account, m);
                        }
                    }
                    ("movimento_conto_evidenza", "tipo_movimento") => m.kind = value.to_string(),
                    ("movimento_conto_evidenza", "tipo_documento") => {
                        m.document = value.to_string();
                    }
                    ("movimento_conto_evidenza", "tipo_operazione") => {
                        m.operation = value.to_string();
                    }
                    ("movimento_conto_evidenza", "numero_documento") => m.number = v(),
                    ("movimento_conto_evidenza", "importo") => m.amount = v(),
                    ("movimento_conto_evidenza", "numero_bolletta_quietanza") => {
                        m.receipt_number = v();
                    }
                    ("movimento_conto_evidenza", "data_movimento") => m.date = v(),
                    ("movimento_conto_evidenza", "data_valuta_ente") => m.value_date = v(),
                    ("movimento_conto_evidenza", "end_to_end_id") => m.end_to_end = v(),
                    ("cliente", "anagrafica_cliente") => m.payer = v(),
                    ("movimento_conto_evidenza", "causale") => m.causale = v(),
                    _ => {}
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase()
}

fn finish(out: &mut Statement, account: &str, m: Movement) {
    let income = norm(&m.kind) == "ENTRATA" && norm(&m.document) == "SOSPESO ENTRATA";
    let reversal = match norm(&m.operation).as_str() {
        "ESEGUITO" => false,
        "STORNATO" => true,
        _ => {
            out.skipped += 1;
            return;
        }
    };
    if !income {
        out.skipped += 1;
        return;
    }
    // STORNATO amounts arrive with either sign: the magnitude is what counts
    let amount_text = m
        .amount
        .as_deref()
        .map(|a| a.trim().trim_start_matches('-'));
    let Some(cents) = amount_text.and_then(cents_of) else {
        out.problems.push(format!(
            "movement {}: amount {:?} is not an amount",
            m.number.as_deref().unwrap_or("?"),
            m.amount
        ));
        return;
    };
    let date = m.date.as_deref().and_then(business_day);
    out.credits.push(Credit {
        account: account.to_string(),
        bank_ref: m
            .receipt_number
            .filter(|n| !n.trim_start_matches('0').is_empty()),
        amount_cents: cents,
        booking_date: date,
        value_date: m.value_date.as_deref().and_then(business_day).or(date),
        texts: m.causale.into_iter().filter(|c| !c.is_empty()).collect(),
        end_to_end_id: m
            .end_to_end
            .filter(|e| !e.eq_ignore_ascii_case("NOTPROVIDED")),
        payer: m.payer,
        reversal,
        provisional: m.number,
    });
}
