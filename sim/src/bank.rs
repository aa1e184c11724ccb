//! `pagopa-sim fdr bank`: the SCT credits that settle the simulated flows, as the Ente's bank
//! (ISO 20022 camt.053.001.02) or treasurer (OPI "giornale di cassa" 1.8, SIOPE+) reports them.
//! Shapes follow `../shared/treasury/FORMATS.md` and its samples: one booked CRDT entry (OPI:
//! ENTRATA / SOSPESO ENTRATA / ESEGUITO) per credit, payer "<PSP> Servizio pagoPA", the AT-05
//! remittance text in `RmtInf/Ustrd` (OPI: `causale`).
//!
//! One credit per flow (its latest revision's money), with on request: the older remittance form
//! (`/PUR/LGPE-RIVERSAMENTO/URI/<id>`, no `/TXT/<prog>/`), a flow settled by two credits (an
//! ordinary and an integrative `/TXT/1/` one), spaces inserted inside the id as treasury software
//! does, and credits that explain nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{NaiveDate, Utc};

use crate::amount::Cents;
use crate::fdr::{stable_hash, FlowsFile, SimFlow};
use crate::xml::escape;

/// Statement format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BankFormat {
    /// ISO 20022 camt.053.001.02.
    Camt053,
    /// OPI giornale di cassa 1.8.
    Opi,
}

/// Remittance text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Remittance {
    /// `/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/<id>` (current SACI layout).
    Current,
    /// `/PUR/LGPE-RIVERSAMENTO/URI/<id>` (older flows).
    Old,
    /// Odd flows current, even flows old.
    Mixed,
}

/// `pagopa-sim fdr bank`.
#[derive(clap::Args, Debug, Clone)]
pub struct BankArgs {
    /// The flows file written by `fdr build`.
    #[arg(long)]
    pub flows: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "camt053")]
    pub format: BankFormat,
    /// Where to write the statement.
    #[arg(long)]
    pub out: PathBuf,
    /// Only the flows received by this organization (default: all).
    #[arg(long)]
    pub organization: Option<String>,
    /// Remittance text form.
    #[arg(long, value_enum, default_value = "current")]
    pub remittance: Remittance,
    /// Settle flow N (ordinal) with two credits: TXT/0 for two thirds, TXT/1 for the rest.
    #[arg(long = "split-credit", value_name = "N")]
    pub split: Vec<usize>,
    /// Insert a space inside flow N's id in the remittance text (after its date).
    #[arg(long = "treasury-spaces", value_name = "N")]
    pub spaces: Vec<usize>,
    /// Add a credit of CENTS that no flow explains. Repeatable.
    #[arg(long = "unexplained-credit", value_name = "CENTS")]
    pub unexplained: Vec<i64>,
}

/// One credit on the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCredit {
    /// Account credited (the flow's IBAN).
    pub iban: String,
    /// Amount, cents.
    pub cents: i64,
    /// Booking / value date.
    pub date: NaiveDate,
    /// AT-05 text.
    pub text: String,
    /// The bank's reference (`AcctSvcrRef`; OPI `numero_bolletta_quietanza`): stable per credit.
    pub bank_ref: String,
    /// AT-41.
    pub end_to_end: String,
    /// Payer.
    pub payer: String,
    /// Counterparty IBAN.
    pub payer_iban: String,
    /// The flow it settles, if any.
    pub fdr: Option<String>,
}

fn remittance(form: Remittance, f: &SimFlow, prog: u8, id: &str) -> String {
    let current = match form {
        Remittance::Current => true,
        Remittance::Old => false,
        Remittance::Mixed => f.ordinal % 2 == 1,
    };
    if current || prog > 0 {
        format!("/PUR/LGPE-RIVERSAMENTO/TXT/{prog}/URI/{id}")
    } else {
        format!("/PUR/LGPE-RIVERSAMENTO/URI/{id}")
    }
}

fn credit(f: &SimFlow, cents: i64, prog: u8, text: String) -> SimCredit {
    let key = format!("{}#{prog}", f.fdr);
    SimCredit {
        iban: f.iban.clone(),
        cents,
        date: f.regulation_date,
        text,
        bank_ref: format!("{:016}", stable_hash(&key) % 10_000_000_000_000_000),
        end_to_end: format!(
            "E2E-{}-{:012}",
            f.psp_id,
            stable_hash(&key) % 1_000_000_000_000
        ),
        payer: format!("{} Servizio pagoPA", f.psp_name),
        payer_iban: format!(
            "IT{:02}S{:022}",
            stable_hash(&f.psp_id) % 90 + 10,
            stable_hash(&f.psp_id) % 10_000_000_000
        ),
        fdr: Some(f.fdr.clone()),
    }
}

/// The credits of the flows (latest revisions), with the options of `args`.
pub fn credits(file: &FlowsFile, args: &BankArgs) -> Vec<SimCredit> {
    let mut out = Vec::new();
    for f in file.latest() {
        if args
            .organization
            .as_ref()
            .is_some_and(|o| *o != f.organization)
        {
            continue;
        }
        let id = if args.spaces.contains(&f.ordinal) {
            match (f.fdr.get(..10), f.fdr.get(10..)) {
                (Some(a), Some(b)) => format!("{a} {b}"),
                _ => f.fdr.clone(),
            }
        } else {
            f.fdr.clone()
        };
        if args.split.contains(&f.ordinal) && f.money_cents >= 2 {
            let second = f.money_cents / 3;
            let second = second.max(1);
            out.push(credit(
                f,
                f.money_cents - second,
                0,
                remittance(Remittance::Current, f, 0, &id),
            ));
            out.push(credit(f, second, 1, remittance(args.remittance, f, 1, &id)));
        } else {
            out.push(credit(
                f,
                f.money_cents,
                0,
                remittance(args.remittance, f, 0, &id),
            ));
        }
    }
    let (iban, date) = out
        .first()
        .map(|c| (c.iban.clone(), c.date))
        .unwrap_or_else(|| {
            (
                String::from("IT60X0542811101000000123456"),
                Utc::now().date_naive(),
            )
        });
    for (i, cents) in args.unexplained.iter().enumerate() {
        let key = format!("unexplained#{i}#{cents}");
        out.push(SimCredit {
            iban: iban.clone(),
            cents: *cents,
            date,
            text: format!("BONIFICO DA PRIVATO RIF. PRATICA {:04}", i + 1),
            bank_ref: format!("{:016}", stable_hash(&key) % 10_000_000_000_000_000),
            end_to_end: "NOTPROVIDED".into(),
            payer: "PERSONA PROVA UNO".into(),
            payer_iban: "IT23S9999901000000000000404".into(),
            fdr: None,
        });
    }
    out
}

fn euros(c: i64) -> String {
    Cents(c).to_xml()
}

/// A camt.053.001.02 statement: one `Stmt` per IBAN credited, balances from zero.
pub fn camt053(credits: &[SimCredit]) -> String {
    let now = Utc::now();
    let mut by_iban: BTreeMap<&str, Vec<&SimCredit>> = BTreeMap::new();
    for c in credits {
        by_iban.entry(c.iban.as_str()).or_default().push(c);
    }
    let msg = format!("SIM-{}", now.format("%Y%m%d%H%M%S"));
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\">\n<BkToCstmrStmt>\n\
<GrpHdr><MsgId>{msg}</MsgId><CreDtTm>{}</CreDtTm></GrpHdr>\n",
        now.format("%Y-%m-%dT%H:%M:%S")
    );
    for (n, (iban, list)) in by_iban.iter().enumerate() {
        let sum: i64 = list.iter().map(|c| c.cents).sum();
        let first = list
            .iter()
            .map(|c| c.date)
            .min()
            .unwrap_or_else(|| now.date_naive());
        let last = list
            .iter()
            .map(|c| c.date)
            .max()
            .unwrap_or_else(|| now.date_naive());
        x.push_str(&format!(
            "<Stmt><Id>{msg}-{}</Id><CreDtTm>{}</CreDtTm><Acct><Id><IBAN>{}</IBAN></Id><Ccy>EUR</Ccy></Acct>\n\
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy=\"EUR\">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{first}</Dt></Dt></Bal>\n\
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{last}</Dt></Dt></Bal>\n\
<TxsSummry><TtlNtries><NbOfNtries>{}</NbOfNtries><Sum>{}</Sum><TtlNetNtryAmt>{}</TtlNetNtryAmt><CdtDbtInd>CRDT</CdtDbtInd></TtlNtries>\
<TtlCdtNtries><NbOfNtries>{}</NbOfNtries><Sum>{}</Sum></TtlCdtNtries></TxsSummry>\n",
            n + 1,
            now.format("%Y-%m-%dT%H:%M:%S"),
            escape(iban),
            euros(sum),
            list.len(),
            euros(sum),
            euros(sum),
            list.len(),
            euros(sum),
        ));
        for (i, c) in list.iter().enumerate() {
            x.push_str(&format!(
                "<Ntry><NtryRef>{}</NtryRef><Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>\
<BookgDt><Dt>{d}</Dt></BookgDt><ValDt><Dt>{d}</Dt></ValDt><AcctSvcrRef>{}</AcctSvcrRef>\
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn><Prtry><Cd>48</Cd><Issr>CBI</Issr></Prtry></BkTxCd>\
<NtryDtls><TxDtls><Refs><AcctSvcrRef>{}</AcctSvcrRef><EndToEndId>{}</EndToEndId></Refs>\
<AmtDtls><TxAmt><Amt Ccy=\"EUR\">{}</Amt></TxAmt></AmtDtls>\
<RltdPties><Dbtr><Nm>{}</Nm></Dbtr><DbtrAcct><Id><IBAN>{}</IBAN></Id></DbtrAcct><CdtrAcct><Id><IBAN>{}</IBAN></Id></CdtrAcct></RltdPties>\
<RmtInf><Ustrd>{}</Ustrd></RmtInf></TxDtls></NtryDtls><AddtlNtryInf>BONIFICO SEPA A VOSTRO FAVORE</AddtlNtryInf></Ntry>\n",
                i + 1,
                euros(c.cents),
                escape(&c.bank_ref),
                escape(&c.bank_ref),
                escape(&c.end_to_end),
                euros(c.cents),
                escape(&c.payer),
                escape(&c.payer_iban),
                escape(iban),
                escape(&c.text),
                d = c.date,
            ));
        }
        x.push_str("</Stmt>\n");
    }
    x.push_str("</BkToCstmrStmt>\n</Document>\n");
    x
}

/// An OPI giornale di cassa 1.8 of one Ente (`organization`): every credit a provisional
/// receipt (ENTRATA, SOSPESO ENTRATA, ESEGUITO) on one `conto_evidenza`. The `ds:Signature`
/// the schema requires is a placeholder (nothing is signed).
pub fn opi(credits: &[SimCredit], organization: &str) -> String {
    let now = Utc::now();
    let day = credits
        .iter()
        .map(|c| c.date)
        .max()
        .unwrap_or_else(|| now.date_naive());
    let sum: i64 = credits.iter().map(|c| c.cents).sum();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<flusso_giornale_di_cassa>\n<testata_messaggio>\
<codice_ABI_BT>99999</codice_ABI_BT><data_ora_creazione_flusso>{}</data_ora_creazione_flusso>\
<codice_ente>ZZX000</codice_ente><descrizione_ente>ENTE {}</descrizione_ente><codice_istat_ente>000000000</codice_istat_ente>\
<codice_fiscale_ente>{}</codice_fiscale_ente><codice_tramite_ente>A2A-00000001</codice_tramite_ente>\
<codice_tramite_BT>A2A-00000002</codice_tramite_BT><codice_ente_BT>0000042</codice_ente_BT></testata_messaggio>\n\
<identificativo_flusso_BT>GDC-{}SIMULATORE{:010}#001#001</identificativo_flusso_BT><pagina>1</pagina><pagine_totali>1</pagine_totali>\
<esercizio>{}</esercizio><data_riferimento_GdC>{day}</data_riferimento_GdC>\n<informazioni_conto_evidenza><conto_evidenza>0000001</conto_evidenza>\
<descrizione_conto_evidenza>CONTO ORDINARIO</descrizione_conto_evidenza>\n",
        now.format("%Y-%m-%dT%H:%M:%S"),
        escape(organization),
        escape(organization),
        day.format("%Y%m%d"),
        stable_hash(organization) % 10_000_000_000,
        day.format("%Y"),
    );
    for (i, c) in credits.iter().enumerate() {
        let n = i + 1;
        let bolletta = stable_hash(&c.bank_ref) % 9_000_000 + 1_000_000;
        x.push_str(&format!(
            "<movimento_conto_evidenza><identificativo_flusso>99999{}0000001</identificativo_flusso>\
<numero_movimento>{n:07}</numero_movimento><tipo_movimento>ENTRATA</tipo_movimento><tipo_documento>SOSPESO ENTRATA</tipo_documento>\
<tipo_operazione>ESEGUITO</tipo_operazione><numero_documento>{:07}</numero_documento>\
<sospeso_da_regolarizzare><data_effettiva_sospeso>{d}</data_effettiva_sospeso><codice_gestionale_provvisorio>0000099999</codice_gestionale_provvisorio></sospeso_da_regolarizzare>\
<progressivo_documento>0000000</progressivo_documento><importo>{}</importo><numero_bolletta_quietanza>{bolletta:07}</numero_bolletta_quietanza>\
<data_movimento>{d}</data_movimento><data_movimento_siope>{d}</data_movimento_siope><data_valuta_ente>{d}</data_valuta_ente>\
<tipo_esecuzione>SEPA CREDIT TRANSFER</tipo_esecuzione><coordinate>{}</coordinate><codice_riferimento_operazione>{}</codice_riferimento_operazione>\
<end_to_end_id>{}</end_to_end_id><assoggettamento_bollo>ESENTE BOLLO</assoggettamento_bollo>\
<cliente><anagrafica_cliente>{}</anagrafica_cliente></cliente><causale>{}</causale></movimento_conto_evidenza>\n",
            day.format("%Y%m%d"),
            1000 + n,
            euros(c.cents),
            escape(&c.payer_iban),
            escape(&c.bank_ref),
            escape(&c.end_to_end),
            escape(&c.payer.to_uppercase()),
            escape(&c.text),
            d = c.date,
        ));
    }
    x.push_str(&format!(
        "<saldo_precedente_conto_evidenza>0.00</saldo_precedente_conto_evidenza><totale_entrate_conto_evidenza>{s}</totale_entrate_conto_evidenza>\
<totale_uscite_conto_evidenza>0.00</totale_uscite_conto_evidenza><saldo_finale_conto_evidenza>{s}</saldo_finale_conto_evidenza>\n</informazioni_conto_evidenza>\n\
<saldo_complessivo_precedente>0.00</saldo_complessivo_precedente><totale_complessivo_entrate>{s}</totale_complessivo_entrate>\
<totale_complessivo_uscite>0.00</totale_complessivo_uscite><saldo_complessivo_finale>{s}</saldo_complessivo_finale>\n\
<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
<ds:Reference URI=\"\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>UExBQ0VIT0xERVI=</ds:DigestValue></ds:Reference>\
</ds:SignedInfo><ds:SignatureValue>UExBQ0VIT0xERVI=</ds:SignatureValue></ds:Signature>\n</flusso_giornale_di_cassa>\n",
        s = euros(sum)
    ));
    x
}

/// Runs `fdr bank`.
pub fn run(args: &BankArgs) -> Result<(), String> {
    let file = FlowsFile::load(&args.flows)?;
    let list = credits(&file, args);
    let text = match args.format {
        BankFormat::Camt053 => camt053(&list),
        BankFormat::Opi => {
            let org = args
                .organization
                .clone()
                .or_else(|| file.flows.first().map(|f| f.organization.clone()))
                .ok_or("no flows, and no --organization for the OPI header")?;
            opi(&list, &org)
        }
    };
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    for c in &list {
        println!(
            "CREDIT {} {} {} {:?}",
            c.date,
            Cents(c.cents),
            c.fdr.as_deref().unwrap_or("-"),
            c.text
        );
    }
    println!(
        "pagopa-sim: {} credit(s), {} EUR -> {}",
        list.len(),
        Cents(list.iter().map(|c| c.cents).sum()),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdr::{build_flows, PaymentRecord, TransferRecord};

    fn flows() -> FlowsFile {
        let p: Vec<PaymentRecord> = (1..=3)
            .map(|i| PaymentRecord {
                organization: "80001234568".into(),
                notice_number: format!("31200000000000000{i}"),
                iuv: format!("1200000000000000{i}"),
                receipt_id: format!("R{i}"),
                psp_id: "88888888888".into(),
                psp_name: "PSP di Prova".into(),
                channel_id: "88888888888_01".into(),
                payment_date_time: format!("2026-07-0{i}T10:00:00"),
                stand_in: false,
                transfers: vec![TransferRecord {
                    id_transfer: 1,
                    amount_cents: 1_000 * i64::from(i),
                    organization: "80001234568".into(),
                    iban: Some("IT47D0103002600000061234567".into()),
                }],
            })
            .collect();
        build_flows(&p, &[], Utc::now()).unwrap()
    }

    fn args(format: BankFormat) -> BankArgs {
        BankArgs {
            flows: PathBuf::new(),
            format,
            out: PathBuf::new(),
            organization: None,
            remittance: Remittance::Mixed,
            split: vec![2],
            spaces: vec![3],
            unexplained: vec![4_242],
        }
    }

    #[test]
    fn one_credit_per_flow_split_spaced_and_unexplained() {
        let f = flows();
        let c = credits(&f, &args(BankFormat::Camt053));
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/2026-07-0288888888888-S0000001",
                "/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/2026-07-0388888888888-S0000001",
                "/PUR/LGPE-RIVERSAMENTO/TXT/1/URI/2026-07-0388888888888-S0000001",
                "/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/2026-07-04 88888888888-S0000001",
                "BONIFICO DA PRIVATO RIF. PRATICA 0001",
            ]
        );
        let cents: Vec<i64> = c.iter().map(|c| c.cents).collect();
        assert_eq!(cents, vec![1_000, 1_334, 666, 3_000, 4_242]);
        let mut refs: Vec<&str> = c.iter().map(|c| c.bank_ref.as_str()).collect();
        refs.sort_unstable();
        refs.dedup();
        assert_eq!(refs.len(), 5, "every credit its own bank reference");
        let old = BankArgs {
            remittance: Remittance::Old,
            split: vec![],
            spaces: vec![],
            unexplained: vec![],
            ..args(BankFormat::Camt053)
        };
        assert_eq!(
            credits(&f, &old)[0].text,
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-07-0288888888888-S0000001"
        );
        let x = camt053(&c);
        assert!(x.contains(
            "<Ustrd>/PUR/LGPE-RIVERSAMENTO/TXT/1/URI/2026-07-0388888888888-S0000001</Ustrd>"
        ));
        assert_eq!(x.matches("<Ntry>").count(), 5);
        let o = opi(&c, "80001234568");
        assert_eq!(o.matches("<movimento_conto_evidenza>").count(), 5);
        assert!(o.contains("<totale_complessivo_entrate>102.42</totale_complessivo_entrate>"));
    }
}
