//! camt.053 / camt.054 (001.02 … 001.08), bare or inside CBI envelopes: only booked entries
//! are money; a batch entry is split into its transactions; `Ustrd` pieces are joined.

use super::walk::{walk, Step};
use super::{cents_of, Credit, Format, Statement, StatementError};
use crate::fdr::business_day;

#[derive(Default)]
struct Tx {
    amount: Option<String>,
    end_to_end: Option<String>,
    ustrd: Vec<String>,
    additional: Option<String>,
    payer: Option<String>,
}

#[derive(Default)]
struct Entry {
    amount: Option<String>,
    credit_debit: String,
    reversal: bool,
    status: String,
    booking: Option<String>,
    value: Option<String>,
    bank_ref: Option<String>,
    additional: Option<String>,
    txs: Vec<Tx>,
}

fn ends_with(path: &[String], tail: &[&str]) -> bool {
    path.len() >= tail.len()
        && path
            .iter()
            .rev()
            .zip(tail.iter().rev())
            .all(|(a, b)| a == b)
}

fn real_reference(r: &str) -> Option<String> {
    let r = r.trim();
    (!r.is_empty() && !r.eq_ignore_ascii_case("NOTPROVIDED")).then(|| r.to_string())
}

pub(super) fn decode(text: &str, format: Format) -> Result<Statement, StatementError> {
    let mut out = Statement {
        format,
        credits: Vec::new(),
        skipped: 0,
        problems: Vec::new(),
    };
    let mut account = String::new();
    let mut entry: Option<Entry> = None;
    let mut tx: Option<Tx> = None;
    walk(text, |step| {
        match step {
            Step::Open(path) => match path.last().map(String::as_str) {
                Some("Ntry") => entry = Some(Entry::default()),
                Some("TxDtls") if entry.is_some() => tx = Some(Tx::default()),
                _ => {}
            },
            Step::Close(path, value) => {
                let leaf = path.last().map(String::as_str).unwrap_or_default();
                if let Some(t) = tx.as_mut() {
                    if leaf == "TxDtls" {
                        if let (Some(e), Some(t)) = (entry.as_mut(), tx.take()) {
                            e.txs.push(t);
                        }
                    } else if ends_with(path, &["AmtDtls", "TxAmt", "Amt"])
                        || ends_with(path, &["TxDtls", "Amt"])
                    {
                        t.amount = Some(value.to_string());
                    } else if ends_with(path, &["Refs", "EndToEndId"]) {
                        t.end_to_end = real_reference(value);
                    } else if ends_with(path, &["RmtInf", "Ustrd"]) {
                        t.ustrd.push(value.to_string());
                    } else if leaf == "AddtlTxInf" {
                        t.additional = Some(value.to_string());
                    } else if ends_with(path, &["Dbtr", "Nm"])
                        || ends_with(path, &["Dbtr", "Pty", "Nm"])
                    {
                        t.payer = Some(value.to_string());
                    }
                    return Ok(());
                }
                if let Some(e) = entry.as_mut() {
                    match leaf {
                        "Ntry" => {
                            if let Some(e) = entry.take() {
                                finish(&mut out, &account, e);
                            }
                        }
                        "Amt" if ends_with(path, &["Ntry", "Amt"]) => {
                            e.amount = Some(value.to_string());
                        }
                        "CdtDbtInd" if ends_with(path, &["Ntry", "CdtDbtInd"]) => {
                            e.credit_debit = value.to_string();
                        }
                        "RvslInd" => e.reversal = value.eq_ignore_ascii_case("true"),
                        "Sts" if ends_with(path, &["Ntry", "Sts"]) && !value.is_empty() => {
                            e.status = value.to_string();
                        }
                        "Cd" if ends_with(path, &["Ntry", "Sts", "Cd"]) => {
                            e.status = value.to_string();
                        }
                        "Dt" | "DtTm"
                            if ends_with(path, &["BookgDt", "Dt"])
                                || ends_with(path, &["BookgDt", "DtTm"]) =>
                        {
                            e.booking = Some(value.to_string());
                        }
                        "Dt" | "DtTm"
                            if ends_with(path, &["ValDt", "Dt"])
                                || ends_with(path, &["ValDt", "DtTm"]) =>
                        {
                            e.value = Some(value.to_string());
                        }
                        "AcctSvcrRef" if ends_with(path, &["Ntry", "AcctSvcrRef"]) => {
                            e.bank_ref = real_reference(value);
                        }
                        "AddtlNtryInf" => e.additional = Some(value.to_string()),
                        _ => {}
                    }
                    return Ok(());
                }
                if ends_with(path, &["Acct", "Id", "IBAN"])
                    && path.iter().any(|p| p == "Stmt" || p == "Ntfctn")
                {
                    account = value.to_string();
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn finish(out: &mut Statement, account: &str, e: Entry) {
    let booked = e.status.eq_ignore_ascii_case("BOOK");
    let credit = e.credit_debit.eq_ignore_ascii_case("CRDT");
    let debit = e.credit_debit.eq_ignore_ascii_case("DBIT");
    // money in: a booked credit; a booked debit that reverses a credit lowers it
    let reversal = debit && e.reversal;
    if !booked || !(credit && !e.reversal || reversal) {
        out.skipped += 1;
        return;
    }
    let texts_of = |t: Option<&Tx>| -> Vec<String> {
        let mut texts = Vec::new();
        if let Some(t) = t {
            if !t.ustrd.is_empty() {
                texts.push(t.ustrd.concat());
                if t.ustrd.len() > 1 {
                    texts.push(t.ustrd.join(" "));
                }
            }
            texts.extend(t.additional.clone());
        }
        texts.extend(e.additional.clone());
        texts.retain(|s| !s.trim().is_empty());
        texts
    };
    let credit_of = |amount: i64, t: Option<&Tx>| Credit {
        account: account.to_string(),
        bank_ref: e.bank_ref.clone(),
        amount_cents: amount,
        booking_date: e.booking.as_deref().and_then(business_day),
        value_date: e.value.as_deref().and_then(business_day),
        texts: texts_of(t),
        end_to_end_id: t.and_then(|t| t.end_to_end.clone()),
        payer: t.and_then(|t| t.payer.clone()),
        reversal,
        provisional: None,
    };
    let entry_amount = e.amount.as_deref().and_then(cents_of);
    if e.txs.len() > 1 {
        // a batch: each transaction is its own credit (one may settle a flow, one not)
        for (i, t) in e.txs.iter().enumerate() {
            match t.amount.as_deref().and_then(cents_of) {
                Some(c) => out.credits.push(credit_of(c, Some(t))),
                None => out.problems.push(format!(
                    "entry {}: transaction {} of a batch has no readable amount ({:?})",
                    e.bank_ref.as_deref().unwrap_or("?"),
                    i + 1,
                    t.amount
                )),
            }
        }
        return;
    }
    match entry_amount {
        Some(c) => out.credits.push(credit_of(c, e.txs.first())),
        None => out.problems.push(format!(
            "entry {}: amount {:?} is not a whole number of cents",
            e.bank_ref.as_deref().unwrap_or("?"),
            e.amount
        )),
    }
}
