//! The documents a citizen reaches without an API key: a notice's PDF by organization and
//! notice number (as the portal already shows that notice to whoever types its number), and a
//! receipt — its PDF and its verification page — by the receipt's unguessable verification id
//! ([`crate::documents::VerifyKey`]).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono_tz::Europe::Rome;
use minijinja::context;
use mpay_messages::domain::cart::format_amount_it;
use mpay_storage::PositionRepository as _;
use serde::Serialize;

use super::pages::lookup_notice;
use super::{error_page, respond, Page, Portal};
use crate::documents::{notice_input, pdf_response, receipt_input, render};
use crate::AppState;

/// `GET /avvisi/{org}/{nav}/pdf`: "Scarica l'avviso" — the notice the portal shows for that
/// number (the same lookup: a notice that cannot be paid now is not printed here).
pub async fn notice_pdf(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (org, code) = path.into_inner();
    let item = match lookup_notice(&state, &portal, &org, &code).await {
        Ok(item) => item,
        Err((_, message)) => {
            return error_page(
                &portal,
                &state,
                StatusCode::NOT_FOUND,
                "Avviso non disponibile",
                &message,
            )
        }
    };
    let Some(ctx) = state.orgs.get(&item.organization).cloned() else {
        return error_page(
            &portal,
            &state,
            StatusCode::NOT_FOUND,
            "Avviso non disponibile",
            "Ente non trovato.",
        );
    };
    let ledger = state.store.ledger.clone();
    let org_fc = ctx.fiscal_code.clone();
    let nav = item.notice_number.clone();
    let found = web::block(move || {
        let nav = mpay_messages::NoticeNumber::parse_unchecked(&nav).map_err(|e| e.to_string())?;
        ledger
            .find_by_notice(&org_fc, &nav)
            .map_err(|e| e.to_string())
    })
    .await;
    let Ok(Ok(Some(position))) = found else {
        return error_page(
            &portal,
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Errore",
            "Si è verificato un errore interno: riprova tra qualche minuto.",
        );
    };
    let input = notice_input(&ctx.settings, &position, Some(&item.notice_number));
    match render(move || mpay_documents::render_notice(&input)).await {
        Ok(pdf) => pdf_response(pdf, &format!("avviso-{}.pdf", item.notice_number)),
        Err(_) => error_page(
            &portal,
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Errore",
            "Non è stato possibile preparare l'avviso: riprova tra qualche minuto.",
        ),
    }
}

async fn receipt_by_id(state: &AppState, id: &str) -> Option<mpay_storage::StoredReceipt> {
    let (org, receipt_id) = state.verify_key.open(id)?;
    state
        .store
        .organization_receipt(org, receipt_id)
        .await
        .ok()
        .flatten()
}

const UNKNOWN: &str = "Ricevuta non trovata: controlla l'indirizzo o il codice QR della ricevuta.";

/// `GET /ricevute/{id}/pdf`: "Scarica la ricevuta".
pub async fn receipt_pdf(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let Some(r) = receipt_by_id(&state, &id).await else {
        return error_page(
            &portal,
            &state,
            StatusCode::NOT_FOUND,
            "Ricevuta non trovata",
            UNKNOWN,
        );
    };
    let ec_name = state
        .orgs
        .get(&r.organization)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let verify = format!(
        "{}/ricevute/verify/{}",
        crate::api::documents::public_origin(&state, &req),
        id.as_str()
    );
    let input = receipt_input(&r, &ec_name, verify);
    match render(move || mpay_documents::render_receipt(&input)).await {
        Ok(pdf) => pdf_response(
            pdf,
            &format!(
                "ricevuta-{}.pdf",
                crate::api::documents::safe_name(&r.receipt_id)
            ),
        ),
        Err(_) => error_page(
            &portal,
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Errore",
            "Non è stato possibile preparare la ricevuta: riprova tra qualche minuto.",
        ),
    }
}

#[derive(Serialize)]
struct VerifyView {
    outcome: String,
    paid_at: String,
    amount: String,
    ec_name: String,
    ec_fiscal_code: String,
    description: String,
    notice_number: String,
    iuv: String,
    receipt_id: String,
    psp: String,
}

/// `GET /ricevute/verify/{id}`: the receipt's essential data, so a third party can check a
/// printed receipt (payer and debtor are not shown).
pub async fn verify(
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    id: web::Path<String>,
) -> HttpResponse {
    let Some(s) = receipt_by_id(&state, &id).await else {
        return error_page(
            &portal,
            &state,
            StatusCode::NOT_FOUND,
            "Ricevuta non trovata",
            UNKNOWN,
        );
    };
    let ec_name = state
        .orgs
        .get(&s.organization)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let input = receipt_input(&s, &ec_name, String::new());
    let view = VerifyView {
        outcome: if input.outcome == "OK" {
            "Pagamento eseguito".into()
        } else {
            input.outcome.clone()
        },
        paid_at: input
            .paid_at
            .with_timezone(&Rome)
            .format("%d/%m/%Y %H:%M:%S")
            .to_string(),
        amount: format!("{} €", format_amount_it(input.total_cents)),
        ec_name: input.ec_name.clone(),
        ec_fiscal_code: input.ec_fiscal_code.clone(),
        description: input.description.clone(),
        notice_number: mpay_documents::payload::format_notice_number(&input.nav),
        iuv: input.iuv.clone(),
        receipt_id: input.receipt_id.clone(),
        psp: input.psp.clone(),
    };
    let html = match portal.render(
        "verify.html",
        context! { r => view, id => id.as_str(), cart_count => 0 },
    ) {
        Ok(html) => html,
        Err(_) => {
            return error_page(
                &portal,
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Errore",
                "Errore interno.",
            )
        }
    };
    respond(
        &portal,
        &state,
        Page {
            status: StatusCode::OK,
            html,
            cookies: vec![],
        },
    )
}
