//! Hidden `mpay store stress-writer`: the child process of the SIGKILL crash test. Writes debt
//! positions (creates, and updates of earlier ones) from several tasks and prints one line per
//! write only after it is durable:
//! `ACK C <iupd>` for a create, `ACK M <iupd> <revision>` for an update.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, Utc};
use mpay_messages::position::*;
use mpay_messages::{Amount, FiscalCode, Iban, NoticeLayout, OrgFiscalCode};
use mpay_storage::{DurabilityPoint, PositionRepository, Store};

const ORG: &str = "80001234568";

fn position(
    org: &OrgFiscalCode,
    iupd: String,
    nav: mpay_messages::NoticeNumber,
    i: u64,
) -> anyhow::Result<DebtPosition> {
    let now = Utc::now();
    let cents = 100 + (i % 10_000) as i64;
    Ok(DebtPosition {
        organization_fiscal_code: org.clone(),
        iupd,
        debtor: Debtor {
            kind: DebtorType::F,
            fiscal_code: FiscalCode::parse_unchecked(if i.is_multiple_of(2) {
                "RSSMRA80A01H501U"
            } else {
                "VRDGPP75C41F205I"
            })?,
            full_name: "Stress Test".into(),
            street_name: None,
            civic_number: None,
            postal_code: None,
            city: None,
            province: None,
            region: None,
            country: None,
            email: None,
            phone: None,
        },
        switch_to_expired: i.is_multiple_of(3),
        pay_stand_in: true,
        company_name: "Comune di Borgo Demo".into(),
        office_name: None,
        service_code: None,
        validity_date: None,
        status: PositionStatus::Valid,
        inserted_date: now,
        publish_date: Some(now),
        last_updated_date: now,
        payment_date: None,
        payment_options: vec![PaymentOption {
            iuv: nav.iuv(),
            nav,
            amount: Amount::from_cents(cents)?,
            description: "stress".into(),
            is_partial_payment: false,
            due_date: now + Duration::days((i % 400) as i64 - 200),
            retention_date: None,
            fee: Amount::ZERO,
            notification_fee: Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers: vec![Transfer {
                id_transfer: 1,
                amount: Amount::from_cents(cents)?,
                organization_fiscal_code: None,
                remittance_information: "stress".into(),
                category: "9/0101108TS/".into(),
                destination: Destination::Iban {
                    iban: Iban::parse_unchecked("IT47D0103002600000061234567")?,
                    postal_iban: None,
                },
                company_name: None,
                metadata: vec![],
            }],
            metadata: vec![],
            details: Default::default(),
        }],
        revision: 0,
        origin: mpay_messages::position::Origin::Rest,
    })
}

pub fn run(dir: &Path, prefix: &str) -> anyhow::Result<()> {
    let store = Store::open(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let store = store.clone();
            let out = out.clone();
            let prefix = prefix.to_string();
            tasks.push(tokio::spawn(async move {
                let org = OrgFiscalCode::parse_unchecked(ORG)?;
                let layout = NoticeLayout::Aux3 {
                    segregation_code: 12,
                };
                for i in 0u64.. {
                    let ledger = store.ledger.clone();
                    let (org2, prefix2) = (org.clone(), prefix.clone());
                    let line = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                        if i % 4 == 3 {
                            // update an earlier position of this task: new amount and notice
                            let iupd = format!("{prefix2}-{t}-{}", i - 1);
                            let nav = ledger.next_notice(&org2, &layout)?;
                            let p = ledger.modify(&org2, &iupd, &mut |p| {
                                if let Some(o) = p.payment_options.first_mut() {
                                    o.nav = nav.clone();
                                    o.iuv = nav.iuv();
                                }
                                p.status = if p.status == PositionStatus::Valid {
                                    PositionStatus::Invalid
                                } else {
                                    PositionStatus::Valid
                                };
                                Ok(())
                            })?;
                            Ok(format!("ACK M {iupd} {}", p.revision))
                        } else {
                            let iupd = format!("{prefix2}-{t}-{i}");
                            let nav = ledger.next_notice(&org2, &layout)?;
                            ledger.create(position(&org2, iupd.clone(), nav, i)?)?;
                            Ok(format!("ACK C {iupd}"))
                        }
                    })
                    .await??;
                    store.durability.commit(DurabilityPoint::Cli).await?;
                    let mut o = out.lock().map_err(|_| anyhow::anyhow!("stdout lock"))?;
                    writeln!(o, "{line}")?;
                    o.flush()?;
                }
                Ok::<(), anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok::<(), anyhow::Error>(())
    })
}
