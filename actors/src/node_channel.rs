//! `NodeChannel`: our outbound channel to pagoPA (DESIGN §5). Today it posts carts to pagoPA
//! Checkout (`POST /carts`, ec/v1 or ec/v2, SPEC §3.3) with the subscription key, a timeout and
//! retries of what was certainly not received (connection refused/reset before sending).
//!
//! A POST that may have reached Checkout (timeout after sending, broken answer) is never
//! retried here: Checkout carts are not idempotent (SPEC §6 rule 7); the cart says so instead.

use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::health::{ActorState, HealthRegistry};

/// Which Checkout API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutVersion {
    /// `checkout/ec/v1` (no waiting URL).
    V1,
    /// `checkout/ec/v2` (`returnWaitingUrl` required).
    V2,
}

/// How to reach Checkout.
#[derive(Clone)]
pub struct CheckoutSettings {
    /// Base URL up to the version (`https://api.platform.pagopa.it/checkout/ec/v2`).
    pub base_url: String,
    /// API version.
    pub version: CheckoutVersion,
    /// `Ocp-Apim-Subscription-Key` (a secret: never logged).
    pub subscription_key: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Extra attempts for requests that certainly did not leave (connection errors).
    pub connect_retries: u32,
}

impl std::fmt::Debug for CheckoutSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutSettings")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .field(
                "subscription_key",
                &self.subscription_key.as_ref().map(|_| "***"),
            )
            .field("timeout", &self.timeout)
            .field("connect_retries", &self.connect_retries)
            .finish()
    }
}

/// One notice of `CartRequest.paymentNotices` (checkout_v1/v2.json `PaymentNotice`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutNotice {
    /// 18 digits.
    pub notice_number: String,
    /// Organization fiscal code (11).
    pub fiscal_code: String,
    /// Integer cents ≥ 1.
    pub amount: i64,
    /// ≤ 140.
    pub company_name: String,
    /// ≤ 140.
    pub description: String,
}

/// `returnUrls` (v2 adds `returnWaitingUrl`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReturnUrls {
    /// Paid.
    pub return_ok_url: String,
    /// Cancelled by the citizen.
    pub return_cancel_url: String,
    /// Error.
    pub return_error_url: String,
    /// v2: outcome not known yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_waiting_url: Option<String>,
}

/// The body of `POST /carts` (`CartRequest` / `CartRequestV2`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutCart {
    /// 1..5 notices.
    pub payment_notices: Vec<CheckoutNotice>,
    /// Where Checkout sends the browser back.
    pub return_urls: ReturnUrls,
    /// Our cart id.
    pub id_cart: String,
    /// E-mail for the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_notice: Option<String>,
    /// All transfers on postal IBANs.
    pub all_c_c_p: bool,
}

/// Why a cart did not reach Checkout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// No answer in time after the request left: Checkout may have the cart.
    #[error("Checkout did not answer in time")]
    Timeout,
    /// Checkout could not be reached (the request did not leave), after the retries.
    #[error("Checkout unreachable: {0}")]
    Unreachable(String),
    /// Checkout refused the cart (400/422/5xx with ProblemJson).
    #[error("Checkout answered {status}: {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// ProblemJson `detail` (or `title`).
        detail: String,
    },
    /// Checkout answered something that is not in its API (no location, broken body).
    #[error("unexpected answer from Checkout: {0}")]
    BadAnswer(String),
    /// The channel actor is gone or its mailbox full.
    #[error("outbound channel unavailable")]
    Unavailable,
}

impl ChannelError {
    /// Whether Checkout may have created a session for the cart.
    pub fn maybe_received(&self) -> bool {
        matches!(self, Self::Timeout | Self::BadAnswer(_))
    }

    /// The sentence the citizen reads.
    pub fn message_it(&self) -> String {
        match self {
            Self::Timeout => "pagoPA non ha risposto in tempo. Se non sei stato indirizzato alla pagina di pagamento, puoi riprovare: il carrello è ancora pagabile.".into(),
            Self::Unreachable(_) | Self::Unavailable => "Il servizio pagoPA non è raggiungibile in questo momento. Riprova tra qualche minuto: il carrello è ancora pagabile.".into(),
            Self::Refused { status: 422, .. } => "pagoPA ha rifiutato il carrello perché uno degli avvisi non risulta pagabile. Controlla gli avvisi nel carrello.".into(),
            Self::Refused { status, .. } if *status < 500 => "pagoPA ha rifiutato il carrello. Controlla gli avvisi e riprova.".into(),
            Self::Refused { .. } => "Il servizio pagoPA ha avuto un errore. Riprova tra qualche minuto: il carrello è ancora pagabile.".into(),
            Self::BadAnswer(_) => "pagoPA ha dato una risposta inattesa. Riprova tra qualche minuto: il carrello è ancora pagabile.".into(),
        }
    }
}

/// Post a cart to Checkout; answers the `location` to redirect the browser to.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ChannelError>")]
pub struct PostCart(pub CheckoutCart);

/// The outbound channel actor.
pub struct NodeChannel {
    client: reqwest::Client,
    settings: CheckoutSettings,
    health: HealthRegistry,
}

impl NodeChannel {
    /// A channel with its own HTTP client (no redirects followed: the 302 is the answer).
    pub fn new(settings: CheckoutSettings, health: HealthRegistry) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        NodeChannel {
            client,
            settings,
            health,
        }
    }
}

impl Actor for NodeChannel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        self.health.register("NodeChannel", "main", false);
        self.health
            .set_state("NodeChannel", "main", ActorState::Running);
        self.health.heartbeat("NodeChannel", "main", 0);
        ctx.run_interval(Duration::from_secs(5), |this, _| {
            this.health.heartbeat("NodeChannel", "main", 0);
        });
    }
}

impl Supervised for NodeChannel {}

async fn post_once(
    client: &reqwest::Client,
    settings: &CheckoutSettings,
    body: &CheckoutCart,
) -> Result<String, (ChannelError, bool)> {
    let url = format!("{}/carts", settings.base_url.trim_end_matches('/'));
    let mut req = client.post(&url).json(body);
    if let Some(k) = &settings.subscription_key {
        req = req.header("Ocp-Apim-Subscription-Key", k);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err((ChannelError::Unreachable(e.to_string()), true)),
        Err(e) if e.is_timeout() => return Err((ChannelError::Timeout, false)),
        Err(e) => return Err((ChannelError::BadAnswer(e.to_string()), false)),
    };
    let status = resp.status().as_u16();
    if status == 302 || status == 303 || status == 301 {
        return resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                (
                    ChannelError::BadAnswer(format!("{status} without location")),
                    false,
                )
            });
    }
    let text = resp.text().await.unwrap_or_default();
    let problem: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let detail = problem
        .as_ref()
        .and_then(|p| p.get("detail").or_else(|| p.get("title")))
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    if (400..600).contains(&status) {
        Err((ChannelError::Refused { status, detail }, false))
    } else {
        Err((ChannelError::BadAnswer(format!("status {status}")), false))
    }
}

impl Handler<PostCart> for NodeChannel {
    type Result = ResponseFuture<Result<String, ChannelError>>;

    fn handle(&mut self, msg: PostCart, _: &mut Self::Context) -> Self::Result {
        let (client, settings, health) = (
            self.client.clone(),
            self.settings.clone(),
            self.health.clone(),
        );
        let mut body = msg.0;
        if settings.version == CheckoutVersion::V1 {
            body.return_urls.return_waiting_url = None;
        }
        Box::pin(async move {
            let mut attempt = 0u32;
            loop {
                match post_once(&client, &settings, &body).await {
                    Ok(location) => {
                        metrics::counter!("mpay_checkout_carts_total", "outcome" => "ok")
                            .increment(1);
                        return Ok(location);
                    }
                    Err((e, retryable)) => {
                        if retryable && attempt < settings.connect_retries {
                            attempt += 1;
                            tracing::warn!(error = %e, attempt, "Checkout unreachable; retrying");
                            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
                            continue;
                        }
                        tracing::warn!(error = %e, cart = %body.id_cart, "cart not accepted by Checkout");
                        health.error("NodeChannel", "main", &e.to_string());
                        metrics::counter!("mpay_checkout_carts_total", "outcome" => "error")
                            .increment(1);
                        return Err(e);
                    }
                }
            }
        })
    }
}
