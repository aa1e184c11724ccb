//! End-to-end tests of the REST API, health and metrics on a real server (random port, temp
//! sled store), driven over HTTP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mpay_messages::{NoticeLayout, NoticeNumber};
use mpay_storage::{JournalQuery, JournalStore};
use serde_json::{json, Value};

#[actix_web::test]
async fn health_endpoints_report_actors_and_readiness() {
    let app = spawn_app().await;
    let live = app
        .client
        .get(format!("{}/health/live", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready: Value = app
        .client
        .get(format!("{}/health/ready", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "UP");
    let actors: Vec<Value> = app
        .client
        .get(format!("{}/health/actors", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = actors.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    for k in ["JournalWriter", "Scheduler", "Watchdog"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    for a in &actors {
        assert_eq!(a["state"], "running", "{a}");
        assert_eq!(a["restarts"], 0);
        assert!(a["lastHeartbeat"].is_string());
    }
}

#[actix_web::test]
async fn create_without_iuv_generates_a_valid_notice_number() {
    let app = spawn_app().await;
    let res = app
        .post(ORG_A, KEY_A, "", &position_body("A-1", 12_050))
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "DRAFT");
    assert_eq!(body["organizationFiscalCode"], ORG_A);
    let nav = body["paymentOption"][0]["nav"].as_str().unwrap();
    let iuv = body["paymentOption"][0]["iuv"].as_str().unwrap();
    let parsed = NoticeNumber::parse(nav).expect("strict check digit holds");
    assert_eq!(
        parsed.layout(),
        NoticeLayout::Aux3 {
            segregation_code: 12
        }
    );
    assert_eq!(&nav[1..], iuv);
    assert_eq!(body["paymentOption"][0]["amount"], 12_050);
    assert_eq!(body["paymentOption"][0]["transfer"][0]["iban"], IBAN_A);
    // GET answers the same
    let got: Value = app.get(ORG_A, KEY_A, "/A-1").await.json().await.unwrap();
    assert_eq!(got["paymentOption"][0]["nav"], nav);
    assert_eq!(got["fiscalCode"], "RSSMRA80A01H501U");
    // a given nav is kept; a given iuv alone gets its nav
    let mut b = position_body("A-2", 100);
    b["paymentOption"][0]["iuv"] = json!("12202600000000171");
    let res: Value = app.post(ORG_A, KEY_A, "", &b).await.json().await.unwrap();
    assert_eq!(res["paymentOption"][0]["nav"], "312202600000000171");
}

#[actix_web::test]
async fn concurrent_creates_get_distinct_notice_numbers() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.positions_url(ORG_A);
        tasks.push(actix_rt::spawn(async move {
            let r = client
                .post(url)
                .header("Ocp-Apim-Subscription-Key", KEY_A)
                .json(&position_body(&format!("C-{i}"), 100 + i))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.unwrap();
            v["paymentOption"][0]["nav"].as_str().unwrap().to_string()
        }));
    }
    let mut navs = std::collections::HashSet::new();
    for t in tasks {
        assert!(navs.insert(t.await.unwrap()));
    }
    assert_eq!(navs.len(), 40);
}

#[actix_web::test]
async fn cross_tenant_access_is_refused() {
    let app = spawn_app().await;
    assert_eq!(
        app.post(ORG_A, KEY_A, "", &position_body("SECRET", 100))
            .await
            .status(),
        201
    );
    // B's key on A's resources: 403, for every verb
    assert_eq!(app.get(ORG_A, KEY_B, "/SECRET").await.status(), 403);
    assert_eq!(app.get(ORG_A, KEY_B, "").await.status(), 403);
    assert_eq!(
        app.post(ORG_A, KEY_B, "", &position_body("X", 100))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.put(ORG_A, KEY_B, "/SECRET", &position_body("SECRET", 999))
            .await
            .status(),
        403
    );
    assert_eq!(app.delete(ORG_A, KEY_B, "/SECRET").await.status(), 403);
    assert_eq!(
        app.post(ORG_A, KEY_B, "/SECRET/invalidate", &json!({}))
            .await
            .status(),
        403
    );
    // B's key on its own path does not see A's position
    assert_eq!(app.get(ORG_B, KEY_B, "/SECRET").await.status(), 404);
    let list: Value = app.get(ORG_B, KEY_B, "").await.json().await.unwrap();
    assert_eq!(list["payment_position_list"].as_array().unwrap().len(), 0);
    // no key / unknown key: 401 problem
    let r = app
        .client
        .get(app.positions_url(ORG_A))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(app.get(ORG_A, "not-a-key", "/SECRET").await.status(), 401);
    // a key on an organization that does not exist here
    assert_eq!(app.get("00000000000", KEY_A, "").await.status(), 403);
    // A's position is untouched
    let p: Value = app.get(ORG_A, KEY_A, "/SECRET").await.json().await.unwrap();
    assert_eq!(p["status"], "DRAFT");
    assert_eq!(p["paymentOption"][0]["amount"], 100);
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

fn fields(p: &Value) -> Vec<String> {
    p["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn invalid_bodies_get_problem_json_naming_the_field() {
    let app = spawn_app().await;
    let mut b = position_body("V-1", 100);
    b["paymentOption"][0]["amount"] = json!(150);
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert!(
        fields(&p).contains(&"paymentOption[0].amount".to_string()),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("sum of the transfers"),
        "{p}"
    );

    let mut b = position_body("V-1", 100);
    b["paymentOption"][0]["transfer"][0]["amount"] = json!("cento");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(
        fields(&p),
        vec!["paymentOption[0].transfer[0].amount"],
        "{p}"
    );

    let mut b = position_body("V-1", 100);
    b["paymentOption"][0]["transfer"][0]["iban"] = json!("IT00X0000000000000000000000");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(fields(&p), vec!["paymentOption[0].transfer[0].iban"], "{p}");

    // a valid IBAN that is not registered for the organization
    let mut b = position_body("V-1", 100);
    b["paymentOption"][0]["transfer"][0]["iban"] = json!(IBAN_B);
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert!(
        p["detail"].as_str().unwrap().contains("not registered"),
        "{p}"
    );

    // another organization's segregation code
    let mut b = position_body("V-1", 100);
    b["paymentOption"][0]["nav"] = json!("344012345678901286");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(fields(&p), vec!["paymentOption[0].nav"], "{p}");

    let mut b = position_body("V-1", 100);
    b["type"] = json!("X");
    b["paymentOption"][0]["dueDate"] = json!("31/12/2026");
    b["paymentOption"][0]["transfer"][0]["idTransfer"] = json!("9");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    let f = fields(&p);
    for expected in [
        "type",
        "paymentOption[0].dueDate",
        "paymentOption[0].transfer[0].idTransfer",
    ] {
        assert!(f.contains(&expected.to_string()), "{expected} in {f:?}");
    }

    let mut b = position_body("V-1", 100);
    b["serviceCode"] = json!("NOPE");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(fields(&p), vec!["serviceCode"]);

    let r = app
        .client
        .post(app.positions_url(ORG_A))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(r, 400).await;

    let huge = "x".repeat(70_000);
    let r = app
        .client
        .post(app.positions_url(ORG_A))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let p = problem(r, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("65536 bytes"), "{p}");
    // a wrong method gets problem JSON too
    let r = app
        .client
        .patch(format!("{}/X", app.positions_url(ORG_A)))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    let p = problem(r, 405).await;
    assert!(p["detail"].as_str().unwrap().contains("PATCH"), "{p}");

    // nothing was stored by any refused request
    let list: Value = app.get(ORG_A, KEY_A, "").await.json().await.unwrap();
    assert_eq!(list["page_info"]["items_found"], 0);
}

#[actix_web::test]
async fn lifecycle_publish_update_invalidate_delete() {
    let app = spawn_app().await;
    assert_eq!(
        app.post(ORG_A, KEY_A, "", &position_body("L-1", 100))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post(ORG_A, KEY_A, "", &position_body("L-1", 100))
            .await
            .status(),
        409
    );

    let p: Value = app
        .post(ORG_A, KEY_A, "/L-1/publish", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "VALID");
    assert!(p["publishDate"].is_string());
    assert_eq!(
        app.post(ORG_A, KEY_A, "/L-1/publish", &json!({}))
            .await
            .status(),
        409
    );
    // a published position cannot be deleted
    assert_eq!(app.delete(ORG_A, KEY_A, "/L-1").await.status(), 409);

    // update keeps nothing of the old options unless given; GPD: back to DRAFT unless toPublish
    let nav_before = p["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    let mut b = position_body("L-1", 500);
    b["paymentOption"][0]["nav"] = json!(nav_before);
    let u: Value = app
        .put(ORG_A, KEY_A, "/L-1?toPublish=true", &b)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u["status"], "VALID");
    assert_eq!(u["paymentOption"][0]["amount"], 500);
    assert_eq!(u["paymentOption"][0]["nav"], nav_before.as_str());
    let u: Value = app
        .put(ORG_A, KEY_A, "/L-1", &b)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u["status"], "DRAFT");
    // the path wins over a different body iupd
    let r = app
        .put(ORG_A, KEY_A, "/L-1", &position_body("OTHER", 1))
        .await;
    assert_eq!(r.status(), 400);

    assert_eq!(
        app.post(ORG_A, KEY_A, "/L-1/publish", &json!({}))
            .await
            .status(),
        200
    );
    let inv: Value = app
        .post(ORG_A, KEY_A, "/L-1/invalidate", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inv["status"], "INVALID");
    assert_eq!(
        app.post(ORG_A, KEY_A, "/L-1/invalidate", &json!({}))
            .await
            .status(),
        409
    );
    assert_eq!(app.put(ORG_A, KEY_A, "/L-1", &b).await.status(), 409);
    assert_eq!(app.delete(ORG_A, KEY_A, "/L-1").await.status(), 409);

    // a draft is deleted, then it is gone and its notice number is free again
    let d: Value = app
        .post(ORG_A, KEY_A, "", &position_body("L-2", 100))
        .await
        .json()
        .await
        .unwrap();
    let nav = d["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    assert_eq!(app.delete(ORG_A, KEY_A, "/L-2").await.status(), 200);
    assert_eq!(app.get(ORG_A, KEY_A, "/L-2").await.status(), 404);
    assert_eq!(app.delete(ORG_A, KEY_A, "/L-2").await.status(), 404);
    let mut again = position_body("L-3", 100);
    again["paymentOption"][0]["nav"] = json!(nav);
    assert_eq!(app.post(ORG_A, KEY_A, "", &again).await.status(), 201);
    // ...but not while it is used
    let mut dup = position_body("L-4", 100);
    dup["paymentOption"][0]["nav"] = json!(nav);
    let p = problem(app.post(ORG_A, KEY_A, "", &dup).await, 409).await;
    assert!(p["detail"].as_str().unwrap().contains("L-3"), "{p}");
}

#[actix_web::test]
async fn list_filters_and_pages() {
    let app = spawn_app().await;
    for i in 0..12 {
        let mut b = position_body(&format!("P-{i:02}"), 100);
        b["paymentOption"][0]["dueDate"] = json!(format!("2030-01-{:02}", i + 1));
        let q = if i % 3 == 0 { "?toPublish=true" } else { "" };
        assert_eq!(app.post(ORG_A, KEY_A, q, &b).await.status(), 201);
    }
    let page: Value = app
        .get(ORG_A, KEY_A, "?limit=5&page=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["page_info"]["items_found"], 2);
    assert_eq!(page["page_info"]["total_pages"], 3);
    let valid: Value = app
        .get(
            ORG_A,
            KEY_A,
            "?status=VALID&orderby=IUPD&ordering=ASC&limit=50",
        )
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = valid["payment_position_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["iupd"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["P-00", "P-03", "P-06", "P-09"]);
    let due: Value = app
        .get(
            ORG_A,
            KEY_A,
            "?due_date_from=2030-01-02&due_date_to=2030-01-04&limit=50",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(due["payment_position_list"].as_array().unwrap().len(), 3);
    problem(app.get(ORG_A, KEY_A, "?status=NOPE").await, 400).await;
    problem(app.get(ORG_A, KEY_A, "?limit=500").await, 400).await;
    problem(app.get(ORG_A, KEY_A, "?due_date_from=yesterday").await, 400).await;
    problem(app.get(ORG_A, KEY_A, "?limit=abc").await, 400).await;
}

#[actix_web::test]
async fn bulk_create_is_all_or_nothing_and_bounded() {
    let app = spawn_app().await;
    let ok = json!({"paymentPositions": [position_body("B-1", 100), position_body("B-2", 200)]});
    let r: Value = app
        .post(ORG_A, KEY_A, "/bulk?toPublish=true", &ok)
        .await
        .json()
        .await
        .unwrap();
    let created = r["paymentPositions"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[1]["status"], "VALID");

    let mut bad = position_body("B-4", 100);
    bad["fullName"] = json!("");
    let body = json!({"paymentPositions": [position_body("B-3", 100), bad]});
    let p = problem(app.post(ORG_A, KEY_A, "/bulk", &body).await, 400).await;
    assert_eq!(fields(&p), vec!["paymentPositions[1].fullName"]);
    assert_eq!(
        app.get(ORG_A, KEY_A, "/B-3").await.status(),
        404,
        "nothing created"
    );

    // a conflict in the middle of the batch leaves nothing behind either
    let body = json!({"paymentPositions": [position_body("B-5", 100), position_body("B-1", 100)]});
    problem(app.post(ORG_A, KEY_A, "/bulk", &body).await, 409).await;
    assert_eq!(app.get(ORG_A, KEY_A, "/B-5").await.status(), 404);

    let many: Vec<Value> = (0..6)
        .map(|i| position_body(&format!("M-{i}"), 1))
        .collect();
    problem(
        app.post(ORG_A, KEY_A, "/bulk", &json!({"paymentPositions": many}))
            .await,
        413,
    )
    .await;
}

#[actix_web::test]
async fn scheduler_expires_and_validates_positions() {
    let app = spawn_app().await;
    let mut b = position_body("EXP", 100);
    b["switchToExpired"] = json!(true);
    b["paymentOption"][0]["dueDate"] = json!("2020-01-01");
    assert_eq!(
        app.post(ORG_A, KEY_A, "?toPublish=true", &b).await.status(),
        201
    );
    // due today in Europe/Rome: still payable
    let mut t = position_body("TODAY", 100);
    t["switchToExpired"] = json!(true);
    t["paymentOption"][0]["dueDate"] = json!(mpay_messages::time::rome_today().to_string());
    assert_eq!(
        app.post(ORG_A, KEY_A, "?toPublish=true", &t).await.status(),
        201
    );
    // becomes valid at its validity date
    let mut v = position_body("LATER", 100);
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    v["validityDate"] = json!(at.to_rfc3339());
    let p: Value = app
        .post(ORG_A, KEY_A, "?toPublish=true", &v)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "PUBLISHED");

    app.wait_for("expiry and validity", || async {
        app.scheduler.addr().do_send(mpay_actors::Tick);
        let e: Value = app.get(ORG_A, KEY_A, "/EXP").await.json().await.unwrap();
        let l: Value = app.get(ORG_A, KEY_A, "/LATER").await.json().await.unwrap();
        e["status"] == "EXPIRED" && l["status"] == "VALID"
    })
    .await;
    let today: Value = app.get(ORG_A, KEY_A, "/TODAY").await.json().await.unwrap();
    assert_eq!(today["status"], "VALID");
}

#[actix_web::test]
async fn journal_metrics_and_openapi() {
    let app = spawn_app().await;
    app.post(ORG_A, KEY_A, "", &position_body("J-1", 100)).await;
    app.get(ORG_A, KEY_B, "/J-1").await;
    let journal = app.store.journal.clone();
    app.wait_for("journal entries", || {
        let journal = journal.clone();
        async move { journal.len() >= 2 }
    })
    .await;
    let entries = journal
        .query(&JournalQuery {
            organization: Some(ORG_A.into()),
            from: None,
            limit: 10,
        })
        .unwrap();
    let ops: Vec<(String, u16)> = entries
        .iter()
        .map(|e| (e.operation.clone(), e.status))
        .collect();
    assert!(
        ops.contains(&(
            "POST /api/v1/organizations/{organizationfiscalcode}/debtpositions".into(),
            201
        )),
        "{ops:?}"
    );
    assert!(
        ops.iter().any(|(_, s)| *s == 403),
        "refusals are journalled too: {ops:?}"
    );
    assert!(entries.iter().all(|e| !e.request_id.is_empty()));

    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in [
        "mpay_http_requests_total",
        "mpay_http_request_duration_seconds",
        "mpay_ledger_positions",
        "mpay_actor_restarts",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics");
    }

    let doc: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]
        ["/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/publish"]["post"]
        .is_object());
    assert!(doc["components"]["schemas"]["PaymentPositionModel"].is_object());
    let ui = app
        .client
        .get(format!("{}/api/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().to_lowercase().contains("swagger"));
}

// ---- issue 11: a new user's first hour ---------------------------------------------------

fn iupds(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["payment_position_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["iupd"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[actix_web::test]
async fn list_finds_positions_by_debtor_notice_iuv_prefix_and_service() {
    let app = spawn_app().await;
    let mut navs = Vec::new();
    for i in 0..4 {
        let mut b = position_body(&format!("TARI-{i}"), 100 + i);
        if i % 2 == 0 {
            b["fiscalCode"] = json!("VRDGPP75C41F205I");
            b["serviceCode"] = json!("AOC");
        }
        let r = app.post(ORG_A, KEY_A, "?toPublish=true", &b).await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        navs.push((
            v["paymentOption"][0]["nav"].as_str().unwrap().to_string(),
            v["paymentOption"][0]["iuv"].as_str().unwrap().to_string(),
        ));
    }
    app.post(ORG_A, KEY_A, "", &position_body("CDS-1", 100))
        .await;
    let get = |q: String| {
        let app = &app;
        async move {
            let r = app.get(ORG_A, KEY_A, &q).await;
            assert_eq!(r.status(), 200, "{q}");
            iupds(&r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        get("?fiscalCode=vrdgpp75c41f205i".into()).await,
        vec!["TARI-0", "TARI-2"],
        "debtor fiscal code, any letter case"
    );
    assert_eq!(get(format!("?nav={}", navs[1].0)).await, vec!["TARI-1"]);
    assert_eq!(get(format!("?iuv={}", navs[3].1)).await, vec!["TARI-3"]);
    assert_eq!(get("?iupdPrefix=CDS-".into()).await, vec!["CDS-1"]);
    assert_eq!(
        get("?serviceCode=AOC&status=VALID".into()).await,
        vec!["TARI-0", "TARI-2"]
    );
    assert!(get("?nav=312000000000000000".into()).await.is_empty());
    assert_eq!(
        get("?payment_date_time_from=2020-01-01T00:00:00".into()).await,
        Vec::<String>::new(),
        "nothing is paid yet"
    );

    // unknown parameters are refused, naming them
    for q in ["?debtor=X", "?fiscalcode=X", "?topublish=true"] {
        let p = problem(app.get(ORG_A, KEY_A, q).await, 400).await;
        assert_eq!(p["code"], "UNKNOWN_QUERY_PARAMETER", "{p}");
        assert_eq!(
            fields(&p),
            vec![q[1..q.find('=').unwrap()].to_string()],
            "{p}"
        );
    }
    let p = problem(
        app.post(ORG_A, KEY_A, "?publish=true", &position_body("Q-1", 1))
            .await,
        400,
    )
    .await;
    assert_eq!(p["code"], "UNKNOWN_QUERY_PARAMETER", "{p}");
    assert_eq!(fields(&p), vec!["publish"], "{p}");
    // a bad number names its parameter
    let p = problem(app.get(ORG_A, KEY_A, "?page=-1").await, 400).await;
    assert_eq!(fields(&p), vec!["page"], "{p}");
    assert_eq!(p["code"], "INVALID_QUERY", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("whole number"),
        "{p}"
    );
}

#[actix_web::test]
async fn errors_speak_the_users_terms() {
    let app = spawn_app().await;
    // an amount in euros
    let mut b = position_body("E-1", 12050);
    b["paymentOption"][0]["amount"] = json!(120.50);
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(p["code"], "INVALID_REQUEST");
    assert_eq!(fields(&p), vec!["paymentOption[0].amount"], "{p}");
    let msg = p["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("integer euro cents") && msg.contains("12050"),
        "{msg}"
    );
    assert!(!msg.contains("i64") && !msg.contains("floating"), "{msg}");
    // a missing field
    let mut b = position_body("E-1", 100);
    b.as_object_mut().unwrap().remove("type");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(fields(&p), vec!["type"], "{p}");
    assert_eq!(p["errors"][0]["message"], "is required", "{p}");
    // JSON syntax: the body, and where
    let r = app
        .client
        .post(app.positions_url(ORG_A))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("content-type", "application/json")
        .body("{\"iupd\": \"E-1\",}")
        .send()
        .await
        .unwrap();
    let p = problem(r, 400).await;
    assert_eq!(p["code"], "INVALID_JSON", "{p}");
    assert_eq!(fields(&p), vec!["body"], "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{p}"
    );
    // every problem has a stable code
    let p = problem(app.get(ORG_A, "wrong-key", "").await, 401).await;
    assert_eq!(p["code"], "UNAUTHORIZED", "{p}");
    let p = problem(app.get(ORG_A, KEY_A, "/NOPE").await, 404).await;
    assert_eq!(p["code"], "NOT_FOUND", "{p}");

    // deleting an INVALID position does not advise to invalidate it
    app.post(ORG_A, KEY_A, "?toPublish=true", &position_body("E-2", 100))
        .await;
    let r = app
        .client
        .post(format!("{}/E-2/invalidate", app.positions_url(ORG_A)))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = problem(app.delete(ORG_A, KEY_A, "/E-2").await, 409).await;
    assert_eq!(p["code"], "INVALID_STATE", "{p}");
    let d = p["detail"].as_str().unwrap();
    assert!(
        d.contains("already invalidated") && !d.contains("invalidate it"),
        "{d}"
    );
}

#[actix_web::test]
async fn a_wrong_fiscal_code_check_character_is_stored_with_a_warning() {
    let app = spawn_app().await;
    let mut b = position_body("W-1", 100);
    b["fiscalCode"] = json!("RSSMRA80A01H501X");
    let r = app.post(ORG_A, KEY_A, "", &b).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fiscalCode"], "RSSMRA80A01H501X", "stored as sent");
    assert_eq!(v["warnings"][0]["field"], "fiscalCode", "{v}");
    assert!(
        v["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expected U"),
        "{v}"
    );
    let v: Value = app.get(ORG_A, KEY_A, "/W-1").await.json().await.unwrap();
    assert_eq!(v["warnings"][0]["field"], "fiscalCode", "{v}");
    // a correct one: no warnings at all
    let v: Value = app
        .post(ORG_A, KEY_A, "", &position_body("W-2", 100))
        .await
        .json()
        .await
        .unwrap();
    assert!(v.get("warnings").is_none(), "{v}");
}

/// Every create example of the OpenAPI document, sent as it is, succeeds (Swagger "Try it out").
#[actix_web::test]
async fn every_openapi_request_example_is_accepted() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = doc.to_string();
    assert!(!text.contains("9007199254740991"), "no max-int examples");
    let mut posted = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(post) = ops.get("post") else {
            continue;
        };
        let Some(schema) = post["requestBody"]["content"]["application/json"]["schema"].as_object()
        else {
            continue;
        };
        let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        let example = &doc["components"]["schemas"][name]["example"];
        assert!(example.is_object(), "{path}: {name} has an example");
        if path.contains("{id}")
            || path.contains("{nav}")
            || path.contains("{iuv}")
            || path.ends_with("/receipts/recover")
        {
            // an action on one record (acknowledge an anomaly, pay an option): its example is
            // checked for presence; the creates below are posted
            continue;
        }
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{organizationfiscalcode}", ORG_A)
        );
        let r = app
            .client
            .post(&url)
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .json(example)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        // a mass print is a job: accepted (202), done later
        let expected = if path.ends_with("/print-jobs") {
            202
        } else {
            201
        };
        assert_eq!(
            status.as_u16(),
            expected,
            "{path}: the example of {name} is refused: {body}"
        );
        posted += 1;
    }
    assert_eq!(posted, 4, "create, bulk create, v3 create and a print job");
    // summaries are for users
    let summary = doc["paths"]["/api/v1/organizations/{organizationfiscalcode}/debtpositions"]
        ["get"]["summary"]
        .as_str()
        .unwrap();
    assert_eq!(summary, "List and search debt positions");
}

#[actix_web::test]
async fn soap_endpoints_answer_get_with_405_and_publish_their_wsdl() {
    let app = spawn_app().await;
    for path in [
        "/pagopa/paForNode",
        "/ArchivioCarichiService/integraecdifferito",
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(r.headers()["allow"], "POST", "{path}");
        let p: Value = r.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains("?wsdl"), "{p}");
        let r = app
            .client
            .get(format!("{}{path}?wsdl", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}?wsdl");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml"));
        let wsdl = r.text().await.unwrap();
        assert!(
            wsdl.contains(&format!("location=\"{}{path}\"", app.base)),
            "the WSDL points at this endpoint: {wsdl}"
        );
    }
    let wsdl = app
        .client
        .get(format!("{}/pagopa/paForNode?wsdl", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for op in [
        "paVerifyPaymentNotice",
        "paGetPayment",
        "paGetPaymentV2",
        "paSendRT",
        "paSendRTV2",
        "paDemandPaymentNotice",
    ] {
        assert!(wsdl.contains(&format!("soapAction=\"{op}\"")), "{op}");
    }
    // POST still reaches the station
    let r = app
        .client
        .post(format!("{}/pagopa/paForNode", app.base))
        .header("content-type", "text/xml")
        .body("<not-soap/>")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 405);
}

#[actix_web::test]
async fn metrics_have_help_lines_and_counters_from_the_start() {
    let app = spawn_app().await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in [
        "mpay_receipts_total",
        "mpay_durable_commits_total",
        "mpay_journal_entries_written_total",
        "mpay_ledger_positions",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {m} ")),
            "# HELP {m} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("mpay_receipts_total{disposition=\"double_payment\"}"),
        "registered at 0 before any receipt:\n{metrics}"
    );
    assert!(
        metrics.contains("mpay_station_requests_total{operation=\"paSendRTV2\",outcome=\"OK\"}"),
        "station counters from the start:\n{metrics}"
    );
}

/// `pagopa-sim psp --create N` creates fresh VALID notices through the REST API on every run,
/// so the README's PSP demo can be repeated (issue 11, point 1).
#[actix_web::test]
async fn the_simulator_creates_fresh_notices_each_run() {
    let app = spawn_app().await;
    let req = pagopa_sim::rest::CreateRequest {
        rest: app.base.clone(),
        api_key: Some(KEY_A.into()),
        organization: ORG_A.into(),
        count: 2,
        amount_cents: 5000,
        iban: IBAN_A.into(),
        category: "9/0101108TS/".into(),
    };
    let client = reqwest::Client::new();
    let first = pagopa_sim::rest::create_notices(&client, &req)
        .await
        .unwrap();
    let second = pagopa_sim::rest::create_notices(&client, &req)
        .await
        .unwrap();
    let mut navs: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|n| n.qr.notice_number.clone())
        .collect();
    assert_eq!(navs.len(), 4);
    navs.sort();
    navs.dedup();
    assert_eq!(navs.len(), 4, "every run has its own notices");
    assert!(first.iter().all(|n| n.amount.map(|c| c.0) == Some(5000)));
    let valid: Value = app
        .get(ORG_A, KEY_A, "?status=VALID&iupdPrefix=SIM-")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(valid["payment_position_list"].as_array().unwrap().len(), 4);
    // without the key: the error says which flag is missing
    let anonymous = pagopa_sim::rest::CreateRequest {
        api_key: None,
        ..req
    };
    let e = pagopa_sim::rest::create_notices(&client, &anonymous)
        .await
        .unwrap_err();
    assert!(e.contains("--key"), "{e}");
}

/// Every route refuses a query parameter it does not know.
#[actix_web::test]
async fn unknown_query_parameters_are_refused_on_every_route() {
    let app = spawn_app().await;
    let url = app.positions_url(ORG_A);
    let r = app
        .client
        .post(format!("{url}?toPublish=true"))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .json(&position_body("K-1", 100))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .client
        .get(format!("{url}?status=VALID"))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (method, suffix) in [
        ("GET", "/K-1?verbose=true"),
        ("DELETE", "/K-1?force=true"),
        ("POST", "/K-1/invalidate?reason=x"),
        ("POST", "/K-1/publish?now=1"),
    ] {
        let r = app
            .client
            .request(method.parse().unwrap(), format!("{url}{suffix}"))
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(
            p["code"], "UNKNOWN_QUERY_PARAMETER",
            "{method} {suffix}: {p}"
        );
        let name = &suffix[suffix.find('?').unwrap() + 1..suffix.find('=').unwrap()];
        assert_eq!(fields(&p), vec![name.to_string()], "{p}");
    }
    // nothing happened to the position
    let v: Value = app.get(ORG_A, KEY_A, "/K-1").await.json().await.unwrap();
    assert_eq!(v["status"], "VALID");
    // feeds upload too
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/feeds?fileName=x.csv&fileNmae=y",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .body("x")
        .send()
        .await
        .unwrap();
    let p = problem(r, 400).await;
    assert_eq!(fields(&p), vec!["fileNmae"], "{p}");
}

/// The API key is read from the `Ocp-Apim-Subscription-Key` header only: a key in the query
/// string (it lands in proxy logs) is refused with 401 `API_KEY_IN_QUERY` on every API version,
/// even a valid one, even with the header too, and nothing is written.
#[actix_web::test]
async fn api_key_in_the_query_string_is_refused() {
    let app = spawn_app().await;
    let url = app.positions_url(ORG_A);
    let r = app
        .client
        .post(format!("{url}?toPublish=true&subscription-key={KEY_A}"))
        .json(&position_body("Q-1", 100))
        .send()
        .await
        .unwrap();
    let p = problem(r, 401).await;
    assert_eq!(p["code"], "API_KEY_IN_QUERY", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("Ocp-Apim-Subscription-Key"),
        "{p}"
    );
    for target in [
        format!("{url}?subscription-key={KEY_A}"),
        format!("{url}?Subscription-Key={KEY_A}&status=VALID"),
        format!(
            "{}/api/v3/organizations/{ORG_A}/debtpositions?subscription%2Dkey={KEY_A}",
            app.base
        ),
        format!(
            "{}/api/v1/organizations/{ORG_A}/feeds?subscription-key={KEY_A}",
            app.base
        ),
    ] {
        let r = app.client.get(&target).send().await.unwrap();
        let p = problem(r, 401).await;
        assert_eq!(p["code"], "API_KEY_IN_QUERY", "{target}: {p}");
    }
    // with the header as well: still refused, the key is already in the logs
    let r = app
        .client
        .get(format!("{url}?subscription-key={KEY_A}"))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r, 401).await["code"], "API_KEY_IN_QUERY");
    // nothing was created
    let r = app.get(ORG_A, KEY_A, "/Q-1").await;
    assert_eq!(r.status(), 404);
}

/// A due, validity or retention date outside 1900-01-01 ..= 2999-12-31 (year 0000, a negative
/// year, 3000) is refused by v1 and v3 with a problem naming the field; nothing is stored, so
/// the station can never answer `<dueDate>0000-01-01</dueDate>`.
#[actix_web::test]
async fn dates_outside_the_schemas_range_are_refused() {
    let app = spawn_app().await;
    for (field, value) in [
        ("dueDate", "0000-01-01T00:00:00Z"),
        ("dueDate", "0000-01-01"),
        ("dueDate", "-0001-06-30"),
        ("dueDate", "1899-12-31"),
        ("dueDate", "3000-01-01T12:00:00"),
        ("retentionDate", "0000-12-31T00:00:00Z"),
    ] {
        let mut b = position_body("D-1", 100);
        b["paymentOption"][0][field] = json!(value);
        let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
        assert_eq!(
            fields(&p),
            vec![format!("paymentOption[0].{field}")],
            "{value}: {p}"
        );
        if !value.starts_with('-') {
            assert!(
                p.to_string().contains("1900-01-01 .. 2999-12-31"),
                "{value}: {p}"
            );
        }
    }
    let mut b = position_body("D-1", 100);
    b["validityDate"] = json!("0000-01-01T00:00:00Z");
    let p = problem(app.post(ORG_A, KEY_A, "", &b).await, 400).await;
    assert_eq!(fields(&p), vec!["validityDate".to_string()], "{p}");
    // v3: the same rule
    let body = json!({
        "iupd": "D-3", "companyName": "Comune",
        "paymentOption": [{"description": "unica", "debtor":
            {"type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi"},
            "installments": [{"amount": 100, "description": "rata", "dueDate": "0000-01-01",
                "transfer": [{"idTransfer": "1", "amount": 100, "remittanceInformation": "r",
                    "category": "9/0101108TS/", "iban": IBAN_A}]}]}]});
    let r = app
        .client
        .post(format!(
            "{}/api/v3/organizations/{ORG_A}/debtpositions",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = problem(r, 400).await;
    assert!(p.to_string().contains("1900-01-01 .. 2999-12-31"), "{p}");
    assert!(fields(&p).iter().any(|f| f.ends_with("dueDate")), "{p}");
    // nothing stored; the bounds themselves are accepted
    assert_eq!(app.get(ORG_A, KEY_A, "/D-1").await.status(), 404);
    let mut b = position_body("D-1", 100);
    b["paymentOption"][0]["dueDate"] = json!("2999-12-31");
    b["paymentOption"][0]["retentionDate"] = json!("2999-12-31T23:59:59");
    b["validityDate"] = json!("2999-12-30T12:00:00");
    let r = app.post(ORG_A, KEY_A, "", &b).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Junk SOAP requests of 200 KB that no served organization is attributed to (malformed, or
/// naming an organization we do not serve) keep at most `journal.unattributed_payload_bytes`
/// (1 KiB) of payload each in the journal, counted in `mpay_journal_payloads_truncated_total`
/// (before: each kept 200 KB, so the journal grew by the size of the junk).
#[actix_web::test]
async fn junk_soap_requests_do_not_grow_the_journal_by_their_size() {
    let app = spawn_app().await;
    let padding = "x".repeat(200_000);
    let bodies = [
        format!("<junk>{padding}</junk>"),
        format!("{padding}{padding}"),
        format!(
            r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><!--{padding}--><pafn:paVerifyPaymentNoticeReq><idPA>99999999999</idPA><idBrokerPA>99999999999</idBrokerPA><idStation>99999999999_01</idStation><qrCode><fiscalCode>99999999999</fiscalCode><noticeNumber>312345678901234567</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>"#
        ),
    ];
    for body in &bodies {
        let r = app
            .client
            .post(format!("{}/pagopa/paForNode", app.base))
            .header("Content-Type", "text/xml")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_server_error());
    }
    let journal = app.store.journal.clone();
    app.wait_for("journal entries", || {
        let journal = journal.clone();
        async move { journal.len() >= 3 }
    })
    .await;
    let entries = journal
        .query(&JournalQuery {
            organization: None,
            from: None,
            limit: 100,
        })
        .unwrap();
    let soap: Vec<_> = entries.iter().filter(|e| e.channel == "soap").collect();
    assert_eq!(soap.len(), 3, "{entries:?}");
    for e in soap {
        let kept = e.payload.as_deref().map_or(0, str::len);
        assert!(
            (1..=1024).contains(&kept),
            "{} kept {kept} bytes of payload",
            e.operation
        );
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mpay_journal_payloads_truncated_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}
