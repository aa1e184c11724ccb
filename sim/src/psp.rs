//! `pagopa-sim psp`: PSP payment flows (verify → getPayment(V2) → sendRT(V2)) against the station,
//! with retries, duplicate and Stand-In receipts and unknown-notice probes, every answer checked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::amount::Cents;
use crate::build::{
    get_payment_request, receipt_from_payment, send_rt_request, stand_in_receipt, verify_request,
    GetPaymentOpts, Op, PspInfo, QrCode, Receipt, ReceiptDates, ReceiptOpts, StandInInput,
    StationIds, Version,
};
use crate::client::{exchange, Checked};
use crate::config::PspConfig;
use crate::model::{parse_payment_data, parse_verify_data, PaymentData, Subject, VerifyData};
use crate::rest::Notice;
use crate::stats::{Stats, Unexpected};
use crate::validate::ValidatorPool;

/// What one job does.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// verify → getPayment → sendRT, with options.
    Pay {
        /// Primitive version.
        version: Version,
        /// Repeat verify and compare.
        retry_verify: bool,
        /// Repeat getPayment and compare.
        retry_get_payment: bool,
        /// Send the receipt twice.
        duplicate: bool,
    },
    /// A Stand-In receipt (no getPayment).
    StandIn {
        /// Primitive version of the receipt.
        version: Version,
        /// Amount differs from the position's.
        different_amount: bool,
        /// Send the receipt twice.
        duplicate: bool,
    },
    /// verify + getPayment of a random NAV.
    Unknown {
        /// Primitive version of getPayment.
        version: Version,
    },
    /// A listed notice that must answer this fault at verify and getPayment.
    ExpectFault {
        /// Primitive version of getPayment.
        version: Version,
        /// The fault code.
        code: String,
    },
}

/// One unit of work.
#[derive(Debug, Clone)]
pub struct Job {
    /// Position in the plan (also the RNG stream).
    pub index: usize,
    /// The notice.
    pub notice: Notice,
    /// What to do.
    pub kind: JobKind,
}

/// Picks exactly `round(n * share)` of `0..n` at random (at least one if share > 0 and n > 0).
fn pick(n: usize, share: f64, rng: &mut StdRng) -> Vec<bool> {
    let mut k = (n as f64 * share).round() as usize;
    if share > 0.0 && n > 0 {
        k = k.max(1);
    }
    let k = k.min(n);
    let mut flags = vec![false; n];
    for slot in flags.iter_mut().take(k) {
        *slot = true;
    }
    flags.shuffle(rng);
    flags
}

/// Plans the jobs: `n` payments over the payable notices, fault checks for listed notices with an
/// `expect`, and unknown-notice probes.
pub fn plan(
    cfg: &PspConfig,
    notices: &[Notice],
    n: usize,
    unknown_fiscal_code: Option<&str>,
    unknown_segregation: Option<&str>,
) -> Result<Vec<Job>, String> {
    let mut rng = StdRng::seed_from_u64(cfg.mix.seed);
    let payable: Vec<&Notice> = notices.iter().filter(|x| x.expect.is_none()).collect();
    let n = n.min(payable.len());
    let m = &cfg.mix;
    let v2 = pick(n, m.v2_share, &mut rng);
    let rv = pick(n, m.retry_verify_share, &mut rng);
    let rg = pick(n, m.retry_get_payment_share, &mut rng);
    let dup = pick(n, m.duplicate_receipt_share, &mut rng);
    let si = pick(n, m.stand_in_share, &mut rng);
    let n_si = si.iter().filter(|b| **b).count();
    let mut si_diff = pick(n_si, cfg.stand_in.different_amount_share, &mut rng).into_iter();
    let ver = |b: bool| if b { Version::V2 } else { Version::V1 };
    let mut jobs = Vec::new();
    for (i, notice) in payable.into_iter().take(n).enumerate() {
        let flag = |v: &Vec<bool>| v.get(i).copied().unwrap_or(false);
        let kind = if flag(&si) {
            JobKind::StandIn {
                version: ver(flag(&v2)),
                different_amount: si_diff.next().unwrap_or(false),
                duplicate: flag(&dup),
            }
        } else {
            JobKind::Pay {
                version: ver(flag(&v2)),
                retry_verify: flag(&rv),
                retry_get_payment: flag(&rg),
                duplicate: flag(&dup),
            }
        };
        jobs.push(Job {
            index: 0,
            notice: notice.clone(),
            kind,
        });
    }
    for notice in notices.iter().filter(|x| x.expect.is_some()) {
        jobs.push(Job {
            index: 0,
            notice: notice.clone(),
            kind: JobKind::ExpectFault {
                version: ver(rng.random_bool(m.v2_share)),
                code: notice.expect.clone().unwrap_or_default(),
            },
        });
    }
    let mut n_unknown = (n as f64 * m.unknown_notice_share).round() as usize;
    if m.unknown_notice_share > 0.0 {
        n_unknown = n_unknown.max(1);
    }
    if n_unknown > 0 {
        let fc = unknown_fiscal_code
            .ok_or("unknown-notice probes need a fiscal code: set notices.unknown_fiscal_code")?;
        let seg = unknown_segregation.ok_or(
            "unknown-notice probes need a segregation code: set notices.unknown_segregation_code",
        )?;
        for _ in 0..n_unknown {
            let nav = crate::nav::random_nav(seg, &mut rng)
                .ok_or("notices.unknown_segregation_code must be two digits")?;
            jobs.push(Job {
                index: 0,
                notice: Notice {
                    qr: QrCode {
                        fiscal_code: fc.to_string(),
                        notice_number: nav,
                    },
                    amount: None,
                    description: None,
                    company_name: None,
                    expect: None,
                },
                kind: JobKind::Unknown {
                    version: ver(rng.random_bool(m.v2_share)),
                },
            });
        }
    }
    jobs.shuffle(&mut rng);
    for (i, j) in jobs.iter_mut().enumerate() {
        j.index = i;
    }
    Ok(jobs)
}

/// Everything a worker needs.
pub struct Runner {
    /// Configuration.
    pub cfg: PspConfig,
    /// Station SOAP URL.
    pub station: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// XSD validators.
    pub pool: ValidatorPool,
    /// Statistics.
    pub stats: Stats,
    /// Where each payment acknowledged by the station is recorded (`--payments-out`).
    pub payments_out: Option<crate::fdr::PaymentLog>,
    /// Spread the payment dates over the N days before today (`--payment-days`; 0 = now).
    pub payment_days: u32,
}

/// Why a job stopped early (already recorded in the statistics).
struct Stop;

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Runner {
    /// The receipt's dates: now, or (with `payment_days`) a day among the N before today
    /// chosen by the job, between 09:00 and 12:59 Italian time (before the Node's 13:00 cut).
    fn dates(&self, job: &Job) -> ReceiptDates {
        if self.payment_days == 0 {
            return ReceiptDates::now();
        }
        let rome = chrono_tz::Europe::Rome;
        let today = chrono::Utc::now().with_timezone(&rome).date_naive();
        let back = 1 + (job.index as u64 % u64::from(self.payment_days));
        let minutes = (job.index / self.payment_days as usize) as i64 % 240;
        let when = (today - chrono::Days::new(back))
            .and_hms_opt(9, 0, 0)
            .map(|t| t + chrono::Duration::minutes(minutes))
            .and_then(|t| {
                use chrono::TimeZone as _;
                rome.from_local_datetime(&t).earliest()
            });
        match when {
            Some(t) => ReceiptDates::at(t),
            None => ReceiptDates::now(),
        }
    }

    fn record(&self, r: &Receipt, ctx: &str) {
        if let Some(log) = &self.payments_out {
            if let Err(e) = log.record(r) {
                self.unexpected(ctx, Op::SendRt, "the payment recorded", e, "");
            }
        }
    }

    fn psp(&self) -> PspInfo {
        let p = &self.cfg.psp;
        PspInfo {
            id_psp: p.id_psp.clone(),
            fiscal_code: p.fiscal_code.clone(),
            partita_iva: p.partita_iva.clone(),
            company_name: p.company_name.clone(),
            id_channel: p.id_channel.clone(),
            channel_description: p.channel_description.clone(),
            payment_method: Some(p.payment_method.clone()),
            fee: self.cfg.fee(),
        }
    }

    fn ids(&self, id_pa: &str) -> StationIds {
        StationIds {
            id_pa: id_pa.to_string(),
            id_broker_pa: self.cfg.station.id_broker_pa.clone(),
            id_station: self.cfg.station.id_station.clone(),
        }
    }

    fn unexpected(&self, ctx: &str, op: Op, expected: &str, got: String, body: &str) {
        self.stats.unexpected(Unexpected {
            context: ctx.to_string(),
            op: op.name().to_string(),
            expected: expected.to_string(),
            got,
            body: body.to_string(),
        });
    }

    async fn call(&self, op: Op, request: String, accepted: &[String], ctx: &str) -> Checked {
        let timeout = match op {
            Op::SendRt | Op::SendRtV2 => self.cfg.station.send_rt_timeout_ms,
            _ => self.cfg.station.timeout_ms,
        };
        exchange(
            &self.client,
            &self.pool,
            &self.stats,
            &self.station,
            op.name(),
            op.response_element(),
            self.cfg.station.soap_action_quoted,
            request,
            self.cfg.station.validate_requests,
            Duration::from_millis(timeout),
            accepted,
            ctx,
        )
        .await
    }

    async fn verify(&self, n: &Notice, accepted: &[String], ctx: &str) -> Result<Checked, Stop> {
        let req = verify_request(&self.ids(&n.qr.fiscal_code), &n.qr);
        let c = self.call(Op::Verify, req, accepted, ctx).await;
        if c.as_expected {
            Ok(c)
        } else {
            Err(Stop)
        }
    }

    async fn verify_ok(&self, n: &Notice, ctx: &str) -> Result<VerifyData, Stop> {
        let c = self.verify(n, &ok(), ctx).await?;
        let body = c.response.as_ref().map(|r| &r.body).ok_or(Stop)?;
        let data = match parse_verify_data(body) {
            Ok(d) => d,
            Err(e) => {
                self.unexpected(ctx, Op::Verify, "readable verify data", e, &c.body);
                return Err(Stop);
            }
        };
        let Some(amount) = data.amount else {
            self.unexpected(
                ctx,
                Op::Verify,
                "paymentList on OK",
                "no paymentList".into(),
                &c.body,
            );
            return Err(Stop);
        };
        if let Some(known) = n.amount {
            if known != amount {
                self.unexpected(
                    ctx,
                    Op::Verify,
                    &format!("amount {known}"),
                    format!("amount {amount}"),
                    &c.body,
                );
                return Err(Stop);
            }
        }
        if data.fiscal_code_pa.is_none()
            || data.company_name.is_none()
            || data.payment_description.is_none()
        {
            self.unexpected(
                ctx,
                Op::Verify,
                "fiscalCodePA, companyName and paymentDescription on OK (SPEC §5.1)",
                "missing".into(),
                &c.body,
            );
            return Err(Stop);
        }
        Ok(data)
    }

    async fn get_payment(
        &self,
        v: Version,
        n: &Notice,
        amount: Option<Cents>,
        accepted: &[String],
        ctx: &str,
    ) -> Result<Checked, Stop> {
        let opts = GetPaymentOpts {
            amount,
            payment_note: None,
            transfer_type: self.cfg.psp.transfer_type.clone(),
            due_date: None,
        };
        let req = get_payment_request(v, &self.ids(&n.qr.fiscal_code), &n.qr, &opts);
        let c = self.call(Op::get_payment(v), req, accepted, ctx).await;
        if c.as_expected {
            Ok(c)
        } else {
            Err(Stop)
        }
    }

    async fn get_payment_ok(
        &self,
        v: Version,
        n: &Notice,
        verify_amount: Cents,
        ctx: &str,
    ) -> Result<PaymentData, Stop> {
        let op = Op::get_payment(v);
        let c = self
            .get_payment(v, n, Some(verify_amount), &ok(), ctx)
            .await?;
        let data = c
            .response
            .as_ref()
            .and_then(|r| r.body.child("data"))
            .ok_or("OK without data".to_string())
            .and_then(parse_payment_data);
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                self.unexpected(ctx, op, "readable data", e, &c.body);
                return Err(Stop);
            }
        };
        let mut problems = Vec::new();
        let total = data.transfers_total();
        if total != data.payment_amount {
            problems.push(format!(
                "paymentAmount {} != sum of transfers {total}",
                data.payment_amount
            ));
        }
        if data.payment_amount != verify_amount {
            problems.push(format!(
                "paymentAmount {} != verify amount {verify_amount}",
                data.payment_amount
            ));
        }
        let ids: Vec<u8> = data.transfers.iter().map(|t| t.id_transfer).collect();
        let want: Vec<u8> = (1..=u8::try_from(ids.len()).unwrap_or(u8::MAX)).collect();
        if ids != want {
            problems.push(format!("idTransfer not 1..n in order: {ids:?}"));
        }
        if let Some(iuv) = crate::nav::iuv_of(&n.qr.notice_number) {
            if data.creditor_reference_id != iuv {
                problems.push(format!(
                    "creditorReferenceId {} != NAV without aux digit {iuv}",
                    data.creditor_reference_id
                ));
            }
        }
        if !problems.is_empty() {
            self.unexpected(
                ctx,
                op,
                "consistent payment data",
                problems.join("; "),
                &c.body,
            );
            return Err(Stop);
        }
        Ok(data)
    }

    async fn send_receipt(
        &self,
        v: Version,
        r: &Receipt,
        accepted: &[String],
        ctx: &str,
    ) -> Result<Checked, Stop> {
        let op = Op::send_rt(v);
        let req = match send_rt_request(v, &self.ids(&r.fiscal_code), r) {
            Ok(x) => x,
            Err(e) => {
                self.unexpected(ctx, op, "a receipt the simulator can build", e, "");
                return Err(Stop);
            }
        };
        let total: Cents = r.transfers.iter().map(|t| t.amount).sum();
        if total != r.payment_amount {
            self.unexpected(
                ctx,
                op,
                "receipt amount = sum of transfers",
                format!("{} != {total}", r.payment_amount),
                "",
            );
            return Err(Stop);
        }
        let c = self.call(op, req, accepted, ctx).await;
        if c.as_expected {
            Ok(c)
        } else {
            Err(Stop)
        }
    }

    async fn run_job(&self, job: &Job) -> Result<(), Stop> {
        // ids (receiptId, IUBD) must be new on every run, whatever the seed: not from the plan's RNG
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let n = &job.notice;
        let ctx = format!(
            "job {} {}/{}",
            job.index, n.qr.fiscal_code, n.qr.notice_number
        );
        match &job.kind {
            JobKind::Pay {
                version,
                retry_verify,
                retry_get_payment,
                duplicate,
            } => {
                let ctx = format!("{ctx} pay {version:?}");
                let vd = self.verify_ok(n, &ctx).await?;
                let amount = vd.amount.ok_or(Stop)?;
                if *retry_verify {
                    let again = self.verify_ok(n, &format!("{ctx} (retry)")).await?;
                    if again != vd {
                        self.unexpected(
                            &ctx,
                            Op::Verify,
                            "the same answer on retry",
                            format!("{vd:?} then {again:?}"),
                            "",
                        );
                        return Err(Stop);
                    }
                    self.stats.count("verify_retries");
                }
                let data = self.get_payment_ok(*version, n, amount, &ctx).await?;
                if *retry_get_payment {
                    let again = self
                        .get_payment_ok(*version, n, amount, &format!("{ctx} (retry)"))
                        .await?;
                    if again != data {
                        self.unexpected(
                            &ctx,
                            Op::get_payment(*version),
                            "the same answer on retry",
                            format!("{data:?} then {again:?}"),
                            "",
                        );
                        return Err(Stop);
                    }
                    self.stats.count("get_payment_retries");
                }
                let opts = ReceiptOpts {
                    payment_note: None,
                    id_bundle: self.cfg.psp.id_bundle.clone(),
                    primary_ci_incurred_fee: if *version == Version::V2 {
                        Some(Cents(0))
                    } else {
                        None
                    },
                    payer: None,
                    fallback_company_name: vd.company_name.clone(),
                };
                let receipt = match receipt_from_payment(
                    *version,
                    &n.qr,
                    &data,
                    &self.psp(),
                    &self.dates(job),
                    &opts,
                    &mut rng,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        self.unexpected(&ctx, Op::send_rt(*version), "a receipt", e, "");
                        return Err(Stop);
                    }
                };
                if data
                    .transfers
                    .iter()
                    .any(|t| matches!(t.account, crate::model::TransferAccount::Stamp { .. }))
                {
                    self.stats.count("receipts_with_stamp");
                }
                self.send_receipt(*version, &receipt, &ok(), &ctx).await?;
                self.record(&receipt, &ctx);
                self.stats.count("payments_completed");
                if *duplicate {
                    self.send_receipt(
                        *version,
                        &receipt,
                        &self.cfg.expect.duplicate_receipt,
                        &format!("{ctx} (duplicate receipt)"),
                    )
                    .await?;
                    self.stats.count("duplicate_receipts");
                }
                Ok(())
            }
            JobKind::StandIn {
                version,
                different_amount,
                duplicate,
            } => {
                let ctx = format!("{ctx} stand-in {version:?}");
                // the Node collected without asking us; what it knows comes from the position copy
                let (amount, description, company) = match n.amount {
                    Some(a) => (a, n.description.clone(), n.company_name.clone()),
                    None => {
                        let vd = self.verify_ok(n, &ctx).await?;
                        (
                            vd.amount.ok_or(Stop)?,
                            vd.payment_description.clone(),
                            vd.company_name.clone(),
                        )
                    }
                };
                let amount = if *different_amount {
                    Cents((amount.0 + self.cfg.stand_in.amount_delta_cents).max(1))
                } else {
                    amount
                };
                let input = StandInInput {
                    notice: n.qr.clone(),
                    amount,
                    description: clip(
                        description.as_deref().unwrap_or("Pagamento in Stand-In"),
                        140,
                    ),
                    company_name: clip(
                        company.as_deref().unwrap_or(n.qr.fiscal_code.as_str()),
                        140,
                    ),
                    iban: self.cfg.stand_in.iban.clone(),
                    transfer_category: self.cfg.stand_in.transfer_category.clone(),
                    debtor: Subject::anonymous(),
                };
                let receipt = stand_in_receipt(&input, &self.psp(), &self.dates(job), &mut rng);
                let accepted = if *different_amount {
                    &self.cfg.expect.stand_in_different_amount
                } else {
                    &self.cfg.expect.stand_in_receipt
                };
                let c = self
                    .send_receipt(*version, &receipt, accepted, &ctx)
                    .await?;
                if c.label == "OK" {
                    self.record(&receipt, &ctx);
                }
                self.stats.count("stand_in_receipts");
                if *duplicate {
                    self.send_receipt(
                        *version,
                        &receipt,
                        &self.cfg.expect.duplicate_receipt,
                        &format!("{ctx} (duplicate receipt)"),
                    )
                    .await?;
                    self.stats.count("duplicate_receipts");
                }
                Ok(())
            }
            JobKind::Unknown { version } => {
                let ctx = format!("{ctx} unknown notice");
                let acc = &self.cfg.expect.unknown_notice;
                self.verify(n, acc, &ctx).await?;
                self.get_payment(*version, n, None, acc, &ctx).await?;
                self.stats.count("unknown_notice_probes");
                Ok(())
            }
            JobKind::ExpectFault { version, code } => {
                let ctx = format!("{ctx} expect {code}");
                let acc = vec![code.clone()];
                self.verify(n, &acc, &ctx).await?;
                self.get_payment(*version, n, None, &acc, &ctx).await?;
                self.stats.count("expected_fault_checks");
                Ok(())
            }
        }
    }
}

fn ok() -> Vec<String> {
    vec!["OK".to_string()]
}

/// Runs the planned jobs with `concurrency` workers; returns the elapsed time.
pub async fn run_jobs(runner: Arc<Runner>, jobs: Vec<Job>, concurrency: usize) -> Duration {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let total = jobs.len();
    let mut handles = Vec::new();
    for _ in 0..concurrency.max(1) {
        let runner = Arc::clone(&runner);
        let jobs = Arc::clone(&jobs);
        let next = Arc::clone(&next);
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if runner.run_job(job).await.is_err() {
                    runner.stats.count("jobs_stopped_early");
                }
                let done = i + 1;
                if total >= 100 && done.is_multiple_of((total / 10).max(1)) {
                    eprintln!("pagopa-sim: {done}/{total} jobs started");
                }
            }
        }));
    }
    for h in handles {
        if let Err(e) = h.await {
            eprintln!("pagopa-sim: worker failed: {e}");
            runner.stats.count("worker_panics");
        }
    }
    start.elapsed()
}

/// Description of the plan for the summary.
pub fn plan_json(jobs: &[Job]) -> serde_json::Value {
    let mut pay = (0u64, 0u64);
    let (mut si, mut unk, mut fault, mut dup, mut rv, mut rg, mut si_diff) = (0, 0, 0, 0, 0, 0, 0);
    for j in jobs {
        match &j.kind {
            JobKind::Pay {
                version,
                retry_verify,
                retry_get_payment,
                duplicate,
            } => {
                if *version == Version::V2 {
                    pay.1 += 1;
                } else {
                    pay.0 += 1;
                }
                rv += u64::from(*retry_verify);
                rg += u64::from(*retry_get_payment);
                dup += u64::from(*duplicate);
            }
            JobKind::StandIn {
                different_amount,
                duplicate,
                ..
            } => {
                si += 1;
                si_diff += u64::from(*different_amount);
                dup += u64::from(*duplicate);
            }
            JobKind::Unknown { .. } => unk += 1,
            JobKind::ExpectFault { .. } => fault += 1,
        }
    }
    json!({
        "payments_v1": pay.0, "payments_v2": pay.1, "stand_in": si, "stand_in_different_amount": si_diff,
        "unknown_probes": unk, "expected_fault_notices": fault, "duplicate_receipts": dup,
        "retry_verify": rv, "retry_get_payment": rg,
    })
}
