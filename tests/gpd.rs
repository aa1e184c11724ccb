//! GPD compatibility (issue 16) on the real server: broker keys and the tenant matrix, the
//! per-organization GPD settings, v3, payment options, paid outside pagoPA, bulk v2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mpay_config::hash_api_key;
use reqwest::Method;
use serde_json::{json, Value};

const BROKER_KEY: &str = "broker-key-all";
const BROKER_KEY_12: &str = "broker-key-code-12";
const ORG_D: &str = "80000000101";
const KEY_D: &str = "key-for-organization-d";
const ORG_G: &str = "77777777777";
const KEY_G: &str = "key-for-organization-g";

fn extra() -> String {
    format!(
        r#"
[[broker.api_keys]]
hash = "{b}"
[[broker.api_keys]]
hash = "{b12}"
segregation_codes = [12]

[[brokers]]
fiscal_code = "15376371009"
[[stations]]
id = "15376371009_01"
broker = "15376371009"
organizations = ["{ORG_D}", "{ORG_G}"]

[[organizations]]
fiscal_code = "{ORG_D}"
name = "Comune altro intermediario"
aux_digit = 3
segregation_code = 12
api_key_hashes = ["{hd}"]

[[organizations]]
fiscal_code = "{ORG_G}"
name = "Ente GPD"
aux_digit = 3
segregation_code = 47
api_key_hashes = ["{hg}"]
[organizations.gpd_compat]
iban_format_only = true
any_iuv_prefix = true
delete_unpaid = true
"#,
        b = hash_api_key(BROKER_KEY),
        b12 = hash_api_key(BROKER_KEY_12),
        hd = hash_api_key(KEY_D),
        hg = hash_api_key(KEY_G),
    )
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("Ocp-Apim-Subscription-Key", key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn body_for(org_iban: &str, iupd: &str, iuv: Option<&str>) -> Value {
    let mut b = position_body(iupd, 1000);
    b["paymentOption"][0]["transfer"][0]["iban"] = json!(org_iban);
    if let Some(i) = iuv {
        b["paymentOption"][0]["iuv"] = json!(i);
    }
    b
}

/// Every verb of the API with `key` on a position of `org` (created with the organization's
/// own key): the statuses answered, in order.
async fn every_verb(
    app: &TestApp,
    org: &str,
    own_key: &str,
    iban: &str,
    key: &str,
    tag: &str,
) -> Vec<(String, u16)> {
    let v1 = format!("/api/v1/organizations/{org}/debtpositions");
    let v3 = format!("/api/v3/organizations/{org}/debtpositions");
    let po = format!("/api/v1/organizations/{org}/paymentoptions");
    // positions made by the owner, to act on
    let (s, p) = call(
        app,
        Method::POST,
        &v1,
        own_key,
        Some(body_for(iban, &format!("{tag}-P"), None)),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let nav = p["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    let iuv = p["paymentOption"][0]["iuv"].as_str().unwrap().to_string();
    let (s, _) = call(
        app,
        Method::POST,
        &v1,
        own_key,
        Some(body_for(iban, &format!("{tag}-Q"), None)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, p2) = call(
        app,
        Method::POST,
        &format!("{v1}?toPublish=true"),
        own_key,
        Some(body_for(iban, &format!("{tag}-R"), None)),
    )
    .await;
    assert_eq!(s, 201);
    let nav2 = p2["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    let mut add = |name: &str, s: u16| out.push((name.to_string(), s));
    add(
        "create",
        call(
            app,
            Method::POST,
            &v1,
            key,
            Some(body_for(iban, &format!("{tag}-N"), None)),
        )
        .await
        .0,
    );
    add("list", call(app, Method::GET, &v1, key, None).await.0);
    add(
        "get",
        call(app, Method::GET, &format!("{v1}/{tag}-P"), key, None)
            .await
            .0,
    );
    add(
        "update",
        call(
            app,
            Method::PUT,
            &format!("{v1}/{tag}-P"),
            key,
            Some(body_for(iban, &format!("{tag}-P"), None)),
        )
        .await
        .0,
    );
    add(
        "publish",
        call(
            app,
            Method::POST,
            &format!("{v1}/{tag}-P/publish"),
            key,
            None,
        )
        .await
        .0,
    );
    add(
        "invalidate",
        call(
            app,
            Method::POST,
            &format!("{v1}/{tag}-P/invalidate"),
            key,
            None,
        )
        .await
        .0,
    );
    add(
        "delete",
        call(app, Method::DELETE, &format!("{v1}/{tag}-Q"), key, None)
            .await
            .0,
    );
    add(
        "bulk v2",
        call(
            app,
            Method::POST,
            &format!("/api/v2/organizations/{org}/debtpositions"),
            key,
            Some(json!({"paymentPositions": [body_for(iban, &format!("{tag}-B"), None)]})),
        )
        .await
        .0,
    );
    add(
        "v3 get",
        call(app, Method::GET, &format!("{v3}/{tag}-R"), key, None)
            .await
            .0,
    );
    add("v3 list", call(app, Method::GET, &v3, key, None).await.0);
    add(
        "option by iuv",
        call(app, Method::GET, &format!("{po}/{iuv}"), key, None)
            .await
            .0,
    );
    add(
        "position by iuv",
        call(
            app,
            Method::GET,
            &format!("{po}/{iuv}/debtposition"),
            key,
            None,
        )
        .await
        .0,
    );
    add(
        "iban change",
        call(
            app,
            Method::PATCH,
            &format!("{v1}/transfers?oldIban={iban}"),
            key,
            Some(json!({"newIban": iban})),
        )
        .await
        .0,
    );
    add(
        "payment options",
        call(
            app,
            Method::POST,
            &format!("/api/v1/payment-options/organizations/{org}/notices/{nav2}"),
            key,
            None,
        )
        .await
        .0,
    );
    add(
        "paid outside",
        call(
            app,
            Method::POST,
            &format!("{po}/paids/{nav2}"),
            key,
            Some(json!({"paymentMethod": "CONTANTI"})),
        )
        .await
        .0,
    );
    let _ = nav;
    out
}

#[actix_web::test]
async fn no_cross_tenant_access_with_organization_broker_and_restricted_broker_keys() {
    let app = spawn_app_with(&extra()).await;
    let cases: [(&str, &str, &str, &str, bool); 9] = [
        // (key, org, its own key, iban, allowed)
        (KEY_A, ORG_A, KEY_A, IBAN_A, true),
        (KEY_A, ORG_B, KEY_B, IBAN_B, false),
        (KEY_A, ORG_D, KEY_D, IBAN_A, false),
        (BROKER_KEY, ORG_A, KEY_A, IBAN_A, true),
        (BROKER_KEY, ORG_B, KEY_B, IBAN_B, true),
        (BROKER_KEY, ORG_D, KEY_D, IBAN_A, false),
        (BROKER_KEY_12, ORG_A, KEY_A, IBAN_A, true),
        // organization B's notices have segregation code 44: outside the key's codes
        (BROKER_KEY_12, ORG_B, KEY_B, IBAN_B, false),
        (BROKER_KEY_12, ORG_D, KEY_D, IBAN_A, false),
    ];
    for (i, (key, org, own, iban, allowed)) in cases.iter().enumerate() {
        let results = every_verb(&app, org, own, iban, key, &format!("M{i}")).await;
        for (verb, status) in results {
            if *allowed {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "case {i} {key} on {org}: {verb} answered {status}"
                );
            } else if *key == BROKER_KEY_12
                && *org == ORG_B
                && (verb == "list" || verb == "v3 list")
            {
                // a restricted key lists only the notices of its codes
                assert_eq!(status, 200, "case {i} {verb}");
            } else if *key == BROKER_KEY_12 && *org == ORG_B && verb == "iban change" {
                assert_eq!(status, 200, "case {i} {verb}");
            } else {
                assert_eq!(status, 403, "case {i} {key} on {org}: {verb}");
            }
        }
    }
    // the restricted key's list holds none of organization B's positions
    let (s, l) = call(
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{ORG_B}/debtpositions"),
        BROKER_KEY_12,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        l["payment_position_list"].as_array().unwrap().len(),
        0,
        "{l}"
    );
    // an unknown key is 401
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{ORG_A}/debtpositions"),
        "nope",
        None,
    )
    .await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn gpd_compat_organization_accepts_gpd_ibans_any_iuv_and_deletes_unpaid() {
    let app = spawn_app_with(&extra()).await;
    let v1 = format!("/api/v1/organizations/{ORG_G}/debtpositions");
    // GPD's IBAN check only, any IUV prefix; toPublish=True as Spring clients send it
    let (s, p) = call(
        &app,
        Method::POST,
        &format!("{v1}?toPublish=True"),
        KEY_G,
        Some(body_for("mockIban", "G-1", Some("97123456789012345"))),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["status"], "VALID");
    assert_eq!(p["paymentOption"][0]["nav"], "397123456789012345");
    assert_eq!(p["paymentOption"][0]["transfer"][0]["iban"], "MOCKIBAN");
    assert_eq!(
        p["paymentOption"][0]["transfer"][0]["status"],
        "T_UNREPORTED"
    );
    assert!(p["paymentOption"][0]["paymentMethod"].is_null());
    assert!(p["paymentOption"][0]
        .as_object()
        .unwrap()
        .contains_key("idReceipt"));
    // GPD's delete rule: a VALID position without payments is deleted
    let (s, _) = call(&app, Method::DELETE, &format!("{v1}/G-1"), KEY_G, None).await;
    assert_eq!(s, 200);
    // the default (organization A) keeps mpay's checks and rule
    let v1a = format!("/api/v1/organizations/{ORG_A}/debtpositions");
    let (s, e) = call(
        &app,
        Method::POST,
        &v1a,
        KEY_A,
        Some(body_for("mockIban", "A-X", None)),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = call(
        &app,
        Method::POST,
        &v1a,
        KEY_A,
        Some(body_for(IBAN_A, "A-Y", Some("97123456789012345"))),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(
        &app,
        Method::POST,
        &format!("{v1a}?toPublish=TRUE"),
        KEY_A,
        Some(body_for(IBAN_A, "A-Z", None)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(&app, Method::DELETE, &format!("{v1a}/A-Z"), KEY_A, None).await;
    assert_eq!(s, 409);
    let (s, e) = call(
        &app,
        Method::POST,
        &format!("{v1a}?toPublish=yes"),
        KEY_A,
        Some(body_for(IBAN_A, "A-W", None)),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    // exclusive filter groups, new orders
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("{v1a}?due_date_from=2026-01-01&payment_date_from=2026-01-01"),
        KEY_A,
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("{v1a}?orderby=COMPANY_NAME&ordering=ASC"),
        KEY_A,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, i) = call(&app, Method::GET, "/api/info", KEY_A, None).await;
    assert_eq!((s, i["name"].as_str()), (200, Some("mpay")));
}

#[actix_web::test]
async fn v3_plans_payment_options_and_paid_outside_agree() {
    let app = spawn_app_with(&extra()).await;
    let mut events = position_events(&app).await;
    let inst = |iuv: &str, cents: i64, due: &str| {
        json!({
        "iuv": iuv, "amount": cents, "description": "rata", "dueDate": due,
        "transfer": [{"idTransfer": "1", "amount": cents, "remittanceInformation": "r",
                      "category": "9/0101108TS/", "iban": "mockIban"}]})
    };
    let debtor = json!({"type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi"});
    let body = json!({
    "iupd": "V3-1", "companyName": "Ente GPD",
    "paymentOption": [
        {"description": "Pagamento in un'unica soluzione", "debtor": debtor,
         "installments": [inst("47000000000000011", 1000, "2030-01-31")]},
        {"description": "Piano rateale A", "debtor": debtor,
         "installments": [inst("47000000000000012", 600, "2030-01-31"), inst("47000000000000013", 400, "2030-03-31")]},
        {"description": "Piano rateale B", "debtor": debtor,
         "installments": [inst("47000000000000014", 500, "2030-02-28"), inst("47000000000000015", 500, "2030-04-30")]}
    ]});
    let v3 = format!("/api/v3/organizations/{ORG_G}/debtpositions");
    let (s, p) = call(
        &app,
        Method::POST,
        &format!("{v3}?toPublish=1"),
        KEY_G,
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    expect_position_event(&mut events, "position.created", ORG_G, "V3-1").await;
    assert_eq!(p["paymentOption"].as_array().unwrap().len(), 3);
    assert_eq!(
        p["paymentOption"][1]["installments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(p["paymentOption"][1]["description"], "Piano rateale A");
    // the same position in v1: five options
    let (_, p1) = call(
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{ORG_G}/debtpositions/V3-1"),
        KEY_G,
        None,
    )
    .await;
    assert_eq!(p1["paymentOption"].as_array().unwrap().len(), 5);
    let po = format!("/api/v1/payment-options/organizations/{ORG_G}/notices/347000000000000011");
    let (s, o) = call(&app, Method::POST, &po, KEY_G, None).await;
    assert_eq!(s, 200, "{o}");
    let groups = o["paymentOptions"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    assert!(groups.iter().all(|g| g["status"] == "PO_UNPAID"));
    // plan A's first installment is paid at the counter
    let (s, paid) = call(&app, Method::POST, &format!("/api/v1/organizations/{ORG_G}/paymentoptions/paids/347000000000000012"), KEY_G,
        Some(json!({"paymentDate": "2029-12-01T10:00:00Z", "paymentMethod": "CONTANTI", "pspCompany": "Sportello", "idReceipt": "R-1"}))).await;
    assert_eq!(s, 200, "{paid}");
    expect_position_event(&mut events, "position.updated", ORG_G, "V3-1").await;
    assert_eq!(paid["status"], "PO_PAID");
    assert_eq!(paid["paymentMethod"], "CONTANTI");
    assert_eq!(paid["paymentDate"], "2029-12-01T10:00:00Z");
    let (_, o) = call(&app, Method::POST, &po, KEY_G, None).await;
    let status_of = |d: &str| {
        o["paymentOptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["description"] == d)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of("Piano rateale A"), "PO_PARTIALLY_PAID");
    assert_eq!(status_of("Piano rateale B"), "PO_INVALID");
    assert_eq!(status_of("Pagamento in un'unica soluzione"), "PO_INVALID");
    // the REST lookup agrees: plan B and the single solution are set aside, plan A goes on
    let base = format!("/api/v1/organizations/{ORG_G}/paymentoptions");
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("{base}/47000000000000014"),
            KEY_G,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("{base}/47000000000000011"),
            KEY_G,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("{base}/47000000000000013"),
            KEY_G,
            None
        )
        .await
        .0,
        200
    );
    // paying plan A's last installment pays the position; reporting its transfer reports it
    assert_eq!(
        call(
            &app,
            Method::POST,
            &format!("{base}/47000000000000013/pay"),
            KEY_G,
            Some(json!({}))
        )
        .await
        .0,
        200
    );
    let (_, v) = call(&app, Method::GET, &format!("{v3}/V3-1"), KEY_G, None).await;
    assert_eq!(v["status"], "PAID");
    for iuv in ["47000000000000012", "47000000000000013"] {
        let (s, r) = call(
            &app,
            Method::POST,
            &format!("{base}/{iuv}/transfers/1/report"),
            KEY_G,
            None,
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["transfer"][0]["status"], "T_REPORTED");
    }
    let (_, v) = call(&app, Method::GET, &format!("{v3}/V3-1"), KEY_G, None).await;
    assert_eq!(v["status"], "REPORTED");
    // a second payment of the same installment is refused (409), a malformed notice is 400 JSON
    assert_eq!(
        call(
            &app,
            Method::POST,
            &format!("{base}/paids/347000000000000012"),
            KEY_G,
            None
        )
        .await
        .0,
        409
    );
    let res = app
        .client
        .post(format!(
            "{}/api/v1/payment-options/organizations/{ORG_G}/notices/ABC",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_G)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/json");
}

#[actix_web::test]
async fn notification_fee_bulk_v2_and_iban_change() {
    let app = spawn_app_with(&extra()).await;
    // every write below is published once durable (position.created|updated|cancelled)
    let mut events = position_events(&app).await;
    let v1 = format!("/api/v1/organizations/{ORG_G}/debtpositions");
    let (s, _) = call(
        &app,
        Method::POST,
        &v1,
        KEY_G,
        Some(body_for("oldIban", "F-1", Some("01000000000000001"))),
    )
    .await;
    assert_eq!(s, 201);
    expect_position_event(&mut events, "position.created", ORG_G, "F-1").await;
    let (s, o) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/organizations/{ORG_G}/paymentoptions/01000000000000001/notificationfee"),
        KEY_G,
        Some(json!({"notificationFee": 150})),
    )
    .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["amount"], 1150);
    expect_position_event(&mut events, "position.updated", ORG_G, "F-1").await;
    assert_eq!(o["notificationFee"], 150);
    assert_eq!(o["transfer"][0]["amount"], 1150);
    assert!(o["lastUpdatedDateNotificationFee"].is_string());
    let (s, r) = call(
        &app,
        Method::PATCH,
        &format!("{v1}/transfers?oldIban=oldIban&limit=10"),
        KEY_G,
        Some(json!({"newIban": "newIban"})),
    )
    .await;
    assert_eq!((s, r["updatedTransfers"].as_u64()), (200, Some(1)));
    expect_position_event(&mut events, "position.updated", ORG_G, "F-1").await;
    let v2 = format!("/api/v2/organizations/{ORG_G}/debtpositions");
    let (s, _) = call(
        &app,
        Method::POST,
        &v2,
        KEY_G,
        Some(
            json!({"paymentPositions": [body_for("x1", "F-2", None), body_for("x1", "F-3", None)]}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    expect_position_event(&mut events, "position.created", ORG_G, "F-2").await;
    expect_position_event(&mut events, "position.created", ORG_G, "F-3").await;
    let (s, u) = call(
        &app,
        Method::PUT,
        &v2,
        KEY_G,
        Some(json!({"paymentPositions": [body_for("x2", "F-2", None)]})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    expect_position_event(&mut events, "position.updated", ORG_G, "F-2").await;
    assert_eq!(
        u["paymentPositions"][0]["paymentOption"][0]["transfer"][0]["iban"],
        "X2"
    );
    // one unknown iupd: nothing is deleted
    let (s, _) = call(
        &app,
        Method::DELETE,
        &v2,
        KEY_G,
        Some(json!({"paymentPositionIUPDs": ["F-2", "NOPE"]})),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        call(&app, Method::GET, &format!("{v1}/F-2"), KEY_G, None)
            .await
            .0,
        200
    );
    let (s, _) = call(
        &app,
        Method::DELETE,
        &v2,
        KEY_G,
        Some(json!({"paymentPositionIUPDs": ["F-2", "F-3"]})),
    )
    .await;
    assert_eq!(s, 200);
    expect_position_event(&mut events, "position.cancelled", ORG_G, "F-2").await;
    expect_position_event(&mut events, "position.cancelled", ORG_G, "F-3").await;
    assert_eq!(
        call(&app, Method::GET, &format!("{v1}/F-3"), KEY_G, None)
            .await
            .0,
        404
    );
}

/// GPD's own test organization (15 digits) and an 11-digit organization, both with
/// `free_identifiers`, on a station of the default broker (whose key opens them).
const ORG_FREE: &str = "700123456789001";
const ORG_F11: &str = "80000000202";
const KEY_FREE: &str = "key-for-organization-free";
const NAV_SINGLE: &str = "0123456789012345678901234";
const NAV_PLAN_1: &str = "9876543210987654321098765";
const NAV_PLAN_2: &str = "5555555555555555555555555";

fn free_extra() -> String {
    format!(
        r#"
[[stations]]
id = "{ORG_B}_02"
organizations = ["{ORG_FREE}", "{ORG_F11}"]

[[organizations]]
fiscal_code = "{ORG_FREE}"
name = "Ente GPD identificativi liberi"
aux_digit = 3
segregation_code = 47
api_key_hashes = ["{hf}"]
[organizations.gpd_compat]
iban_format_only = true
free_identifiers = true
draft_payment_options = true

[[organizations]]
fiscal_code = "{ORG_F11}"
name = "Ente 11 cifre identificativi liberi"
aux_digit = 3
segregation_code = 47
api_key_hashes = ["{hf11}"]
[organizations.gpd_compat]
iban_format_only = true
free_identifiers = true
"#,
        hf = hash_api_key(KEY_FREE),
        hf11 = hash_api_key("key-for-organization-f11"),
    )
}

/// GPD's `buildPpV3SingleAndPlan` (verify-payment-options.steps.js): a single solution and a
/// 2-installment plan, `nav == iuv` of 25 digits.
fn single_and_plan(org: &str, iupd: &str, navs: [&str; 3]) -> Value {
    let debtor = json!({"type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
                        "streetName": "Via Roma", "civicNumber": "10", "postalCode": "00100",
                        "city": "Roma", "province": "RM", "country": "IT"});
    let inst = |nav: &str, cents: i64, desc: &str, due: &str| {
        json!({"nav": nav, "iuv": nav, "amount": cents, "description": desc, "dueDate": due,
               "transfer": [{"idTransfer": "1", "amount": cents, "organizationFiscalCode": org,
                             "remittanceInformation": desc, "category": "10/22252/20",
                             "iban": "IT60X0542811101000000123456", "companyName": "Comune di Esempio",
                             "transferMetadata": [{"key": "capitolo", "value": "TARI"}]}],
               "installmentMetadata": [{"key": "note", "value": desc}]})
    };
    json!({
        "iupd": iupd, "payStandIn": true, "companyName": "Comune di Esempio",
        "officeName": "Ufficio Entrate",
        "paymentOption": [
            {"description": "Pagamento in un'unica soluzione", "validityDate": "2030-01-02T00:00:00.000Z",
             "retentionDate": "2030-03-01T00:00:00.000Z", "switchToExpired": false, "debtor": debtor,
             "installments": [inst(navs[0], 1000, "Saldo unico", "2030-01-31T00:00:00.000Z")]},
            {"description": "Piano rateale A (2 rate)", "validityDate": "2030-01-02T00:00:00.000Z",
             "retentionDate": "2030-04-01T00:00:00.000Z", "switchToExpired": true, "debtor": debtor,
             "installments": [inst(navs[1], 600, "Piano A - Rata 1/2", "2030-02-15T00:00:00.000Z"),
                              inst(navs[2], 400, "Piano A - Rata 2/2", "2030-03-15T00:00:00.000Z")]}
        ]
    })
}

async fn station_verify(app: &TestApp, org: &str, nav: &str) -> String {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Header/><soapenv:Body><pafn:paVerifyPaymentNoticeReq><idPA>{org}</idPA><idBrokerPA>{ORG_B}</idBrokerPA><idStation>{ORG_B}_02</idStation><qrCode><fiscalCode>{org}</fiscalCode><noticeNumber>{nav}</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>"#
    );
    let r = app
        .client
        .post(format!("{}/pagopa/paForNode", app.base))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "paVerifyPaymentNotice")
        .body(body)
        .send()
        .await
        .unwrap();
    r.text().await.unwrap()
}

#[actix_web::test]
async fn free_identifier_organization_is_served_by_rest_only() {
    let mut extra = free_extra();
    extra.push_str(&format!(
        "\n[[broker.api_keys]]\nhash = \"{}\"\n",
        hash_api_key(BROKER_KEY)
    ));
    let app = spawn_app_with(&extra).await;
    let v3 = format!("/api/v3/organizations/{ORG_FREE}/debtpositions");
    let v1 = format!("/api/v1/organizations/{ORG_FREE}/debtpositions");
    // GPD's scenario: a DRAFT created through v3 with the broker's key
    let (s, p) = call(
        &app,
        Method::POST,
        &v3,
        BROKER_KEY,
        Some(single_and_plan(
            ORG_FREE,
            "IUPD-E2E-VERIFY-1",
            [NAV_SINGLE, NAV_PLAN_1, NAV_PLAN_2],
        )),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["organizationFiscalCode"], ORG_FREE);
    assert_eq!(p["paymentOption"][0]["installments"][0]["nav"], NAV_SINGLE);
    assert_eq!(p["paymentOption"][0]["installments"][0]["iuv"], NAV_SINGLE);
    assert_eq!(p["paymentOption"][1]["installments"][1]["nav"], NAV_PLAN_2);
    // the payment-options answer: single first, then the plan (ascending due date)
    let po = format!("/api/v1/payment-options/organizations/{ORG_FREE}/notices/{NAV_SINGLE}");
    let (s, o) = call(&app, Method::POST, &po, BROKER_KEY, None).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["organizationFiscalCode"], ORG_FREE);
    let groups = o["paymentOptions"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{o}");
    assert_eq!(groups[0]["numberOfInstallments"], 1);
    assert_eq!(groups[0]["description"], "Pagamento in un'unica soluzione");
    assert_eq!(groups[0]["installments"][0]["nav"], NAV_SINGLE);
    assert_eq!(groups[1]["numberOfInstallments"], 2);
    assert!(groups[1]["description"]
        .as_str()
        .unwrap()
        .starts_with("Piano rateale"));
    assert!(groups.iter().all(|g| g["status"] == "PO_UNPAID"), "{o}");
    // by a plan's notice number too; unknown and malformed notice numbers as GPD answers them
    let (s, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/payment-options/organizations/{ORG_FREE}/notices/{NAV_PLAN_2}"),
        BROKER_KEY,
        None,
    )
    .await;
    assert_eq!(s, 200);
    for (nav, status) in [("999999999999999", 404), ("ABCDEF", 400)] {
        let (s, _) = call(
            &app,
            Method::POST,
            &format!("/api/v1/payment-options/organizations/{ORG_FREE}/notices/{nav}"),
            BROKER_KEY,
            None,
        )
        .await;
        assert_eq!(s, status, "{nav}");
    }
    // a notice number GPD refuses too: not digits, or more than 30
    let mut bad = single_and_plan(ORG_FREE, "BAD", [&"1".repeat(31), NAV_PLAN_1, NAV_PLAN_2]);
    let (s, e) = call(&app, Method::POST, &v3, KEY_FREE, Some(bad.clone())).await;
    assert_eq!(s, 400, "{e}");
    bad["paymentOption"][0]["installments"][0]["iuv"] = json!("12AB");
    bad["paymentOption"][0]["installments"][0]["nav"] = json!(null);
    let (s, e) = call(&app, Method::POST, &v3, KEY_FREE, Some(bad)).await;
    assert_eq!(s, 400, "{e}");
    // the same notice number twice in the organization: refused
    let (s, e) = call(
        &app,
        Method::POST,
        &v3,
        KEY_FREE,
        Some(single_and_plan(ORG_FREE, "DUP", [NAV_SINGLE, "1", "2"])),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    // list, get (v1 and v3), by IUV
    let (s, l) = call(&app, Method::GET, &v1, KEY_FREE, None).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(
        l["payment_position_list"].as_array().unwrap().len(),
        1,
        "{l}"
    );
    let (s, g) = call(
        &app,
        Method::GET,
        &format!("{v1}/IUPD-E2E-VERIFY-1"),
        KEY_FREE,
        None,
    )
    .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["paymentOption"].as_array().unwrap().len(), 3);
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("{v3}/IUPD-E2E-VERIFY-1"),
        KEY_FREE,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, g) = call(
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{ORG_FREE}/paymentoptions/{NAV_PLAN_1}"),
        KEY_FREE,
        None,
    )
    .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["iupd"], "IUPD-E2E-VERIFY-1");
    // another organization's key (same leading digits, 11 of them) sees nothing of it
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/organizations/{ORG_FREE}/debtpositions"),
        KEY_A,
        None,
    )
    .await;
    assert_eq!(s, 403);
    // the station: the Node cannot name the organization, nor a 25-digit notice
    let answer = station_verify(&app, ORG_FREE, NAV_SINGLE).await;
    assert!(answer.contains("<outcome>KO</outcome>"), "{answer}");
    // an 11-digit organization with free identifiers: a published position holding one GPD
    // notice number is REST-only, whatever notice of it the Node asks about
    let mut mixed = single_and_plan(ORG_F11, "MIXED", [NAV_SINGLE, NAV_PLAN_1, NAV_PLAN_2]);
    mixed["paymentOption"][0]["installments"][0]["nav"] = json!("347000000000000011");
    mixed["paymentOption"][0]["installments"][0]["iuv"] = json!("47000000000000011");
    for o in mixed["paymentOption"].as_array_mut().unwrap() {
        o["validityDate"] = json!(null);
        for i in o["installments"].as_array_mut().unwrap() {
            i["transfer"][0]["organizationFiscalCode"] = json!(ORG_F11);
        }
    }
    let f11 = format!("/api/v3/organizations/{ORG_F11}/debtpositions");
    let (s, m) = call(
        &app,
        Method::POST,
        &format!("{f11}?toPublish=true"),
        BROKER_KEY,
        Some(mixed.clone()),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let answer = station_verify(&app, ORG_F11, "347000000000000011").await;
    assert!(answer.contains("<outcome>KO</outcome>"), "{answer}");
    assert!(answer.contains("PAA_PAGAMENTO_SCONOSCIUTO"), "{answer}");
    // ... while its pagoPA positions are served as usual
    let mut plain = mixed;
    plain["iupd"] = json!("PLAIN");
    plain["paymentOption"] = json!([plain["paymentOption"][0].clone()]);
    plain["paymentOption"][0]["installments"][0]["nav"] = json!("347000000000000021");
    plain["paymentOption"][0]["installments"][0]["iuv"] = json!("47000000000000021");
    let (s, m) = call(
        &app,
        Method::POST,
        &format!("{f11}?toPublish=true"),
        BROKER_KEY,
        Some(plain),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let answer = station_verify(&app, ORG_F11, "347000000000000021").await;
    assert!(answer.contains("<outcome>OK</outcome>"), "{answer}");
    // organizations without the opt-in keep pagoPA's identifiers
    let strict = single_and_plan(ORG_A, "STRICT", [NAV_SINGLE, NAV_PLAN_1, NAV_PLAN_2]);
    let (s, e) = call(
        &app,
        Method::POST,
        &format!("/api/v3/organizations/{ORG_A}/debtpositions"),
        KEY_A,
        Some(strict),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    // delete
    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("{v1}/IUPD-E2E-VERIFY-1"),
        KEY_FREE,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(&app, Method::POST, &po, BROKER_KEY, None).await;
    assert_eq!(s, 404);
    // the ledger's indexes agree with its positions
    let report = mpay_storage::PositionRepository::verify(app.store.ledger.as_ref()).unwrap();
    assert!(report.is_consistent(), "{report:?}");
}

#[actix_web::test]
async fn bulk_v2_update_and_delete_are_all_or_nothing() {
    let app = spawn_app_with(&extra()).await;
    let iban = "IT60X0542811101000000123456";
    let v1 = format!("/api/v1/organizations/{ORG_G}/debtpositions");
    let v2 = format!("/api/v2/organizations/{ORG_G}/debtpositions");
    for (iupd, iuv) in [
        ("U-1", "47000000000000101"),
        ("U-2", "47000000000000102"),
        ("U-3", "47000000000000103"),
    ] {
        let (s, p) = call(
            &app,
            Method::POST,
            &format!("{v1}?toPublish=true"),
            KEY_G,
            Some(body_for(iban, iupd, Some(iuv))),
        )
        .await;
        assert_eq!(s, 201, "{p}");
    }
    let (_, before) = call(&app, Method::GET, &format!("{v1}/U-1"), KEY_G, None).await;
    // the first replacement is valid; the second claims U-3's IUV: found only when writing
    let mut first = body_for(iban, "U-1", Some("47000000000000101"));
    first["paymentOption"][0]["amount"] = json!(2000);
    first["paymentOption"][0]["transfer"][0]["amount"] = json!(2000);
    let second = body_for(iban, "U-2", Some("47000000000000103"));
    let (s, e) = call(
        &app,
        Method::PUT,
        &v2,
        KEY_G,
        Some(json!({"paymentPositions": [first.clone(), second]})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    let (_, after) = call(&app, Method::GET, &format!("{v1}/U-1"), KEY_G, None).await;
    assert_eq!(after, before, "the first position must be unchanged");
    // both valid: both written
    let second = body_for(iban, "U-2", Some("47000000000000104"));
    let (s, r) = call(
        &app,
        Method::PUT,
        &v2,
        KEY_G,
        Some(json!({"paymentPositions": [first, second]})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["paymentPositions"].as_array().unwrap().len(), 2);
    let (_, after) = call(&app, Method::GET, &format!("{v1}/U-1"), KEY_G, None).await;
    assert_eq!(after["paymentOption"][0]["amount"], 2000);
    // delete: the second is paid (outside pagoPA), so none is deleted
    let (s, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/organizations/{ORG_G}/paymentoptions/paids/347000000000000103"),
        KEY_G,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, e) = call(
        &app,
        Method::DELETE,
        &v2,
        KEY_G,
        Some(json!({"paymentPositionIUPDs": ["U-1", "U-3"]})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(
        call(&app, Method::GET, &format!("{v1}/U-1"), KEY_G, None)
            .await
            .0,
        200
    );
    let (s, _) = call(
        &app,
        Method::DELETE,
        &v2,
        KEY_G,
        Some(json!({"paymentPositionIUPDs": ["U-1", "U-2"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        call(&app, Method::GET, &format!("{v1}/U-2"), KEY_G, None)
            .await
            .0,
        404
    );
}
