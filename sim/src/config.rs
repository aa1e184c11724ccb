//! The `psp` mode's TOML configuration (sample: `sim/examples/psp.toml`).

use std::path::Path;

use serde::Deserialize;

use crate::amount::Cents;

/// Whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PspConfig {
    /// Station identifiers and HTTP settings.
    pub station: StationConfig,
    /// The simulated PSP.
    pub psp: PspSection,
    /// Traffic mix (shares are fractions 0..1 of the payments).
    #[serde(default)]
    pub mix: MixConfig,
    /// Accepted answers for the cases where the spec leaves a choice.
    #[serde(default)]
    pub expect: ExpectConfig,
    /// Stand-In receipts.
    #[serde(default)]
    pub stand_in: StandInConfig,
    /// Where the notices come from.
    pub notices: NoticesConfig,
}

/// `[station]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// idBrokerPA.
    pub id_broker_pa: String,
    /// idStation.
    pub id_station: String,
    /// Timeout for verify/getPayment/demand, ms (the Node uses 7 s).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Timeout for sendRT, ms (the Node uses 15 s).
    #[serde(default = "default_rt_timeout")]
    pub send_rt_timeout_ms: u64,
    /// Send `SOAPAction: "op"` (quoted, SOAP 1.1 style) instead of the bare name.
    #[serde(default)]
    pub soap_action_quoted: bool,
    /// Also validate every request the simulator builds before sending it (a failure is a
    /// simulator bug and is counted as an XSD failure).
    #[serde(default = "yes")]
    pub validate_requests: bool,
}

fn default_timeout() -> u64 {
    7000
}
fn default_rt_timeout() -> u64 {
    15000
}
fn yes() -> bool {
    true
}

/// `[psp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PspSection {
    /// idPSP.
    pub id_psp: String,
    /// idBrokerPSP (not carried by paForNode messages; kept for reports).
    pub id_broker_psp: String,
    /// idChannel.
    pub id_channel: String,
    /// channelDescription (≤35 chars).
    #[serde(default = "default_channel_description")]
    pub channel_description: String,
    /// PSPCompanyName (≤70 chars).
    pub company_name: String,
    /// pspFiscalCode.
    #[serde(default)]
    pub fiscal_code: Option<String>,
    /// pspPartitaIVA.
    #[serde(default)]
    pub partita_iva: Option<String>,
    /// paymentMethod.
    #[serde(default = "default_payment_method")]
    pub payment_method: String,
    /// Fee charged to the payer, cents.
    #[serde(default)]
    pub fee_cents: Option<i64>,
    /// V2 only: idBundle.
    #[serde(default)]
    pub id_bundle: Option<String>,
    /// Sent as `transferType` in getPayment (`POSTAL` / `PAGOPA`), if set.
    #[serde(default)]
    pub transfer_type: Option<String>,
}

fn default_channel_description() -> String {
    "app".into()
}
fn default_payment_method() -> String {
    "creditCard".into()
}

/// `[mix]`: fractions of the N payments (exact counts, placed at random with `seed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixConfig {
    /// Share of payments using getPaymentV2/paSendRTV2 (the rest V1).
    #[serde(default = "half")]
    pub v2_share: f64,
    /// Share of payments that repeat verify (answers must be equal).
    #[serde(default)]
    pub retry_verify_share: f64,
    /// Share of payments that repeat getPayment (answers must be equal).
    #[serde(default)]
    pub retry_get_payment_share: f64,
    /// Share of payments whose receipt is sent twice.
    #[serde(default)]
    pub duplicate_receipt_share: f64,
    /// Share of payments closed by a Stand-In receipt (no getPayment).
    #[serde(default)]
    pub stand_in_share: f64,
    /// Extra probes with a random NAV (right segregation code), as a share of N.
    #[serde(default)]
    pub unknown_notice_share: f64,
    /// RNG seed (the run is reproducible for the same notices).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn half() -> f64 {
    0.5
}
fn default_seed() -> u64 {
    42
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            v2_share: 0.5,
            retry_verify_share: 0.0,
            retry_get_payment_share: 0.0,
            duplicate_receipt_share: 0.0,
            stand_in_share: 0.0,
            unknown_notice_share: 0.0,
            seed: 42,
        }
    }
}

/// `[expect]`: each entry lists the accepted labels: `"OK"` or a fault code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// The same receipt sent again (SPEC §6.3 allows OK or PAA_RECEIPT_DUPLICATA).
    #[serde(default = "ok_only")]
    pub duplicate_receipt: Vec<String>,
    /// A Stand-In receipt for a payable notice, same amount.
    #[serde(default = "ok_only")]
    pub stand_in_receipt: Vec<String>,
    /// A Stand-In receipt with a different amount.
    #[serde(default = "ok_or_semantica")]
    pub stand_in_different_amount: Vec<String>,
    /// verify/getPayment of an unknown NAV.
    #[serde(default = "sconosciuto")]
    pub unknown_notice: Vec<String>,
}

fn ok_only() -> Vec<String> {
    vec!["OK".into()]
}
fn ok_or_semantica() -> Vec<String> {
    vec!["OK".into(), "PAA_SEMANTICA".into()]
}
fn sconosciuto() -> Vec<String> {
    vec!["PAA_PAGAMENTO_SCONOSCIUTO".into()]
}

impl Default for ExpectConfig {
    fn default() -> Self {
        ExpectConfig {
            duplicate_receipt: ok_only(),
            stand_in_receipt: ok_only(),
            stand_in_different_amount: ok_or_semantica(),
            unknown_notice: sconosciuto(),
        }
    }
}

/// `[stand_in]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandInConfig {
    /// Share of the Stand-In receipts that carry a different amount.
    #[serde(default)]
    pub different_amount_share: f64,
    /// Added to the amount for those (cents, may be negative; the result stays ≥ 0.01).
    #[serde(default = "default_delta")]
    pub amount_delta_cents: i64,
    /// Account on the single transfer of a Stand-In receipt.
    #[serde(default = "default_iban")]
    pub iban: String,
    /// Taxonomy code of that transfer.
    #[serde(default = "default_category")]
    pub transfer_category: String,
}

fn default_delta() -> i64 {
    100
}
fn default_iban() -> String {
    "IT56B9999999999000000000001".into()
}
fn default_category() -> String {
    "0101100IM".into()
}

impl Default for StandInConfig {
    fn default() -> Self {
        StandInConfig {
            different_amount_share: 0.0,
            amount_delta_cents: default_delta(),
            iban: default_iban(),
            transfer_category: default_category(),
        }
    }
}

/// `[notices]`: a list, discovery through the REST API, or both.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoticesConfig {
    /// Notices listed by hand.
    #[serde(default)]
    pub list: Vec<ListedNotice>,
    /// Discovery of `PO_UNPAID` options through `GET /api/v1/organizations/{cf}/debtpositions`.
    #[serde(default)]
    pub discover: Option<DiscoverConfig>,
    /// Organization for unknown-notice probes (default: the first notice's).
    #[serde(default)]
    pub unknown_fiscal_code: Option<String>,
    /// Segregation code for unknown-notice probes (default: the first aux-3 notice's).
    #[serde(default)]
    pub unknown_segregation_code: Option<String>,
    /// What `psp --create N` puts in the positions it creates.
    #[serde(default)]
    pub create: Option<CreateConfig>,
}

/// `[notices.create]`: the positions `psp --create N` creates through the REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConfig {
    /// Organization (default: the first of `[notices.discover] organizations`).
    #[serde(default)]
    pub organization: Option<String>,
    /// IBAN credited (one of the organization's).
    pub iban: String,
    /// Transfer category (taxonomy code, e.g. `9/0101108TS/`).
    #[serde(default = "default_create_category")]
    pub category: String,
    /// Amount of each notice, in cents.
    #[serde(default = "default_create_amount")]
    pub amount_cents: i64,
}

fn default_create_category() -> String {
    "9/0101108TS/".into()
}
fn default_create_amount() -> i64 {
    5000
}

/// One listed notice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedNotice {
    /// EC fiscal code.
    pub fiscal_code: String,
    /// NAV.
    pub notice_number: String,
    /// Expected amount (cents); checked against verify when given.
    #[serde(default)]
    pub amount_cents: Option<i64>,
    /// Expected verify/getPayment fault (e.g. `PAA_PAGAMENTO_DUPLICATO` for a paid notice):
    /// such a notice is only verified and activated, never paid.
    #[serde(default)]
    pub expect: Option<String>,
}

/// `[notices.discover]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverConfig {
    /// REST base URL, e.g. `http://127.0.0.1:8080` (default: the origin of the station URL;
    /// `psp --rest URL` overrides it).
    #[serde(default)]
    pub rest: Option<String>,
    /// `Ocp-Apim-Subscription-Key`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Organizations whose positions are listed.
    pub organizations: Vec<String>,
    /// Page size (`limit`).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Stop after this many notices (default: all).
    #[serde(default)]
    pub max: Option<usize>,
}

fn default_limit() -> u32 {
    50
}

fn check_share(name: &str, v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} = {v}: a share must be between 0 and 1"))
    }
}

fn check_len(name: &str, v: &str, max: usize) -> Result<(), String> {
    let n = v.chars().count();
    if n == 0 || n > max {
        Err(format!("{name} must be 1..{max} characters, is {n}"))
    } else {
        Ok(())
    }
}

impl PspConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<PspConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<PspConfig, String> {
        let c: PspConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        check_len("station.id_broker_pa", &self.station.id_broker_pa, 35)?;
        check_len("station.id_station", &self.station.id_station, 35)?;
        check_len("psp.id_psp", &self.psp.id_psp, 35)?;
        check_len("psp.id_channel", &self.psp.id_channel, 35)?;
        check_len("psp.channel_description", &self.psp.channel_description, 35)?;
        check_len("psp.company_name", &self.psp.company_name, 70)?;
        check_len("psp.payment_method", &self.psp.payment_method, 35)?;
        if let Some(f) = &self.psp.fiscal_code {
            check_len("psp.fiscal_code", f, 70)?;
        }
        if let Some(p) = &self.psp.partita_iva {
            check_len("psp.partita_iva", p, 20)?;
        }
        if let Some(b) = &self.psp.id_bundle {
            check_len("psp.id_bundle", b, 70)?;
        }
        if let Some(t) = &self.psp.transfer_type {
            if t != "POSTAL" && t != "PAGOPA" {
                return Err(format!("psp.transfer_type {t:?}: POSTAL or PAGOPA"));
            }
        }
        if let Some(f) = self.psp.fee_cents {
            if !(0..=crate::amount::MAX_CENTS).contains(&f) {
                return Err("psp.fee_cents out of range".into());
            }
        }
        let m = &self.mix;
        check_share("mix.v2_share", m.v2_share)?;
        check_share("mix.retry_verify_share", m.retry_verify_share)?;
        check_share("mix.retry_get_payment_share", m.retry_get_payment_share)?;
        check_share("mix.duplicate_receipt_share", m.duplicate_receipt_share)?;
        check_share("mix.stand_in_share", m.stand_in_share)?;
        check_share("mix.unknown_notice_share", m.unknown_notice_share)?;
        check_share(
            "stand_in.different_amount_share",
            self.stand_in.different_amount_share,
        )?;
        check_len("stand_in.iban", &self.stand_in.iban, 35)?;
        check_len(
            "stand_in.transfer_category",
            &self.stand_in.transfer_category,
            140,
        )?;
        for (name, list) in [
            ("expect.duplicate_receipt", &self.expect.duplicate_receipt),
            ("expect.stand_in_receipt", &self.expect.stand_in_receipt),
            (
                "expect.stand_in_different_amount",
                &self.expect.stand_in_different_amount,
            ),
            ("expect.unknown_notice", &self.expect.unknown_notice),
        ] {
            if list.is_empty() {
                return Err(format!("{name} must list at least one accepted answer"));
            }
        }
        for n in &self.notices.list {
            if n.fiscal_code.len() != 11 || !n.fiscal_code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("notice fiscal_code {:?}: 11 digits", n.fiscal_code));
            }
            if n.notice_number.len() != 18 || !n.notice_number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("notice_number {:?}: 18 digits", n.notice_number));
            }
            if let Some(a) = n.amount_cents {
                if !(1..=crate::amount::MAX_CENTS).contains(&a) {
                    return Err(format!("amount_cents {a} out of range"));
                }
            }
        }
        if self.notices.list.is_empty() && self.notices.discover.is_none() {
            return Err("[notices] needs a `list` or a `[notices.discover]` section".into());
        }
        if let Some(s) = &self.notices.unknown_segregation_code {
            if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err("notices.unknown_segregation_code: two digits".into());
            }
        }
        Ok(())
    }

    /// The fee as an amount.
    pub fn fee(&self) -> Option<Cents> {
        self.psp.fee_cents.map(Cents)
    }
}
