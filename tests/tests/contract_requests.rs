//! Contract requests (spec 003) through HTTP, the real worker, PostgreSQL, RabbitMQ and the S3 protocol:
//! draft → upload → create → assign → approve → approve_msp → sign_nhs → sign_msp, document 003's read with
//! its checks in order, the schema's 422s, the create's document checks, the list, and reference data.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::Utc;
use ehealth_domain::{
    contract_request::{INCORRECT_STATUS, NOT_ALLOWED, STATUTE_MD5_MISMATCH, STATUTE_NOT_UPLOADED},
    ClientType,
};
use ehealth_infra::{
    identity,
    reference::{self, ReferenceDocument},
};
use ehealth_tests::{Party, TestApp, ALL_SCOPES};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const NOT_ALLOWED_TO_VIEW: &str = "You are not allowed to view this contract request";

/// A clinic with an owner, a doctor and a division in the reference data, and NHS with an employee.
struct World {
    app: TestApp,
    clinic: Party,
    nhs: Party,
    doctor: Uuid,
    division: Uuid,
    edrpou: String,
}

fn edrpou() -> String {
    format!("{:08}", Uuid::new_v4().as_u128() % 100_000_000)
}

fn party(first_name: &str) -> Value {
    json!({ "first_name": first_name, "last_name": "Іванов", "second_name": "Миколайович" })
}

async fn import(app: &TestApp, doc: Value) {
    let doc: ReferenceDocument = serde_json::from_value(doc).unwrap();
    let mut client = app.pool.get().await.unwrap();
    reference::import(&mut client, &doc).await.unwrap();
}

/// Reference data for a party's legal entity: name, EDRPOU, addresses, an owner (its user) and a division.
async fn clinic_reference(
    app: &TestApp,
    clinic: &Party,
    edrpou: &str,
    division: Uuid,
    doctor: Uuid,
) {
    import(
        app,
        json!({
            "legal_entities": [{
                "id": clinic.legal_entity_id, "name": "Клініка Ноунейм", "edrpou": edrpou, "type": "MSP",
                "addresses": [{"type": "RESIDENCE", "country": "UA", "settlement": "Київ", "zip": "02090"}],
            }],
            "divisions": [{
                "id": division, "legal_entity_id": clinic.legal_entity_id,
                "name": "Бориспільське відділення Клініки Ноунейм",
                "addresses": [{"type": "RESIDENCE", "country": "UA", "settlement": "Бориспіль"}],
                "phones": [{"type": "MOBILE", "number": "+380503410870"}],
                "email": "email@example.com",
                "working_hours": {"mon": [["08.00", "12.00"], ["14.00", "18.00"]]},
            }],
            "employees": [
                {"id": clinic.user_id, "legal_entity_id": clinic.legal_entity_id, "party": party("Петро"),
                 "employee_type": "OWNER", "employee_status": "APPROVED"},
                {"id": doctor, "legal_entity_id": clinic.legal_entity_id, "party": party("Ганна"),
                 "speciality": {"speciality": "THERAPIST", "speciality_officio": true, "level": "FIRST"},
                 "employee_type": "DOCTOR", "employee_status": "APPROVED"},
            ],
        }),
    )
    .await;
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let clinic = app.party("MSP", ClientType::Msp, ALL_SCOPES).await;
    let nhs = app.party("NHS", ClientType::Nhs, ALL_SCOPES).await;
    let (division, doctor, edrpou) = (Uuid::new_v4(), Uuid::new_v4(), edrpou());
    clinic_reference(&app, &clinic, &edrpou, division, doctor).await;
    import(
        &app,
        json!({
            "legal_entities": [{"id": nhs.legal_entity_id, "name": "НСЗУ", "edrpou": "42032422", "type": "NHS",
                "addresses": [{"type": "RESIDENCE", "country": "UA", "settlement": "Київ"}]}],
            "employees": [{"id": nhs.user_id, "legal_entity_id": nhs.legal_entity_id, "party": party("Олена")}],
        }),
    )
    .await;
    World {
        app,
        clinic,
        nhs,
        doctor,
        division,
        edrpou,
    }
}

/// The fields of both of document 003's examples (CAPITATION and REIMBURSEMENT).
const EXAMPLE_FIELDS: [&str; 23] = [
    "id",
    "contract_type",
    "contractor_legal_entity",
    "contractor_owner",
    "contractor_base",
    "contractor_payment_details",
    "id_form",
    "nhs_signer",
    "nhs_legal_entity",
    "nhs_signer_base",
    "nhs_contract_price",
    "nhs_payment_method",
    "status",
    "status_reason",
    "issue_city",
    "contract_number",
    "contract_id",
    "parent_contract_id",
    "start_date",
    "end_date",
    "printout_content",
    "previous_request_id",
    "assignee_id",
];

/// [`EXAMPLE_FIELDS`] and one example's own fields, sorted.
fn example_fields(own: &[&'static str]) -> Vec<&'static str> {
    let mut fields: Vec<&str> = EXAMPLE_FIELDS.iter().chain(own).copied().collect();
    fields.sort_unstable();
    fields
}

/// The field names of an object, sorted.
fn field_names(object: &Value) -> Vec<&str> {
    let mut fields: Vec<&str> = object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    fields
}

/// The MD5 of `a`: the checksums of a create that never gets to its documents, or whose documents are other
/// bytes.
const MD5_OF_A: &str = "0cc175b9c0f1b6a831c399e269772661";

/// A token of the clinic's owner, with all scopes for an hour, as a client of `client_type`.
async fn clinic_user_as(w: &World, client_type: ClientType) -> String {
    w.app
        .token(
            w.clinic.user_id,
            client_type,
            ALL_SCOPES,
            chrono::Duration::hours(1),
        )
        .await
}

async fn md5(app: &TestApp, bytes: &[u8]) -> String {
    app.query("SELECT md5($1::bytea)", &[&bytes]).await[0].get(0)
}

fn body(w: &World, statute_md5: &str, additional_md5: &str) -> Value {
    let today = Utc::now().date_naive();
    json!({
        "contractor_owner_id": w.clinic.user_id,
        "contractor_base": "на підставі закону про Медичне обслуговування населення",
        "contractor_payment_details": {"bank_name": "Банк номер 1", "MFO": "351005", "payer_account": "32009102701026"},
        "contractor_rmsp_amount": 50000,
        "contractor_divisions": [w.division],
        "contractor_employee_divisions": [{"employee_id": w.doctor, "staff_units": 0.5, "declaration_limit": 2000, "division_id": w.division}],
        "id_form": "PMD_1",
        "statute_md5": statute_md5,
        "additional_document_md5": additional_md5,
        "start_date": today + chrono::Duration::days(30),
        "end_date": today + chrono::Duration::days(395),
    })
}

struct Draft {
    id: Uuid,
    statute: Vec<u8>,
    additional: Vec<u8>,
}

async fn put(url: &str, bytes: &[u8]) {
    let response = reqwest::Client::new()
        .put(url)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
}

async fn download(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// A draft whose two documents are uploaded (or only the statute, when `additional` is false).
async fn draft(w: &World, token: &str, additional: bool) -> Draft {
    let reply = w
        .app
        .api(token)
        .request(Method::POST, "/api/contract_requests/capitation", None, &[])
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let data = &reply.body["data"];
    let id: Uuid = data["id"].as_str().unwrap().parse().unwrap();
    let statute = format!("%PDF-1.4 statute {id}").into_bytes();
    let additional_bytes = format!("%PDF-1.4 additional {id}").into_bytes();
    put(data["statute_url"].as_str().unwrap(), &statute).await;
    if additional {
        put(
            data["additional_document_url"].as_str().unwrap(),
            &additional_bytes,
        )
        .await;
    }
    Draft {
        id,
        statute,
        additional: additional_bytes,
    }
}

async fn create(w: &World, draft: &Draft) -> ehealth_tests::JobResult {
    let body = body(
        w,
        &md5(&w.app, &draft.statute).await,
        &md5(&w.app, &draft.additional).await,
    );
    let api = w.app.api(&w.clinic.token);
    let reply = api
        .request(
            Method::POST,
            &format!("/api/contract_requests/capitation/{}", draft.id),
            Some(body),
            &[],
        )
        .await;
    api.finished(reply).await
}

/// A NEW request of the clinic.
async fn created(w: &World) -> Draft {
    let draft = draft(w, &w.clinic.token, true).await;
    create(w, &draft).await.assert_processed();
    draft
}

async fn act(
    w: &World,
    token: &str,
    id: Uuid,
    action: &str,
    body: Option<Value>,
) -> ehealth_tests::JobResult {
    let api = w.app.api(token);
    let reply = api
        .request(
            Method::PATCH,
            &format!("/api/contract_requests/capitation/{id}/actions/{action}"),
            body,
            &[],
        )
        .await;
    api.finished(reply).await
}

fn approval(w: &World) -> Value {
    json!({
        "nhs_signer_id": w.nhs.user_id,
        "nhs_signer_base": "на підставі наказу",
        "nhs_contract_price": 50000,
        "nhs_payment_method": "BACKWARD",
        "issue_city": "Київ",
    })
}

async fn read(w: &World, token: &str, id: Uuid) -> ehealth_tests::http::Reply {
    w.app
        .api(token)
        .get(&format!("/api/contract_requests/capitation/{id}"))
        .await
}

/// `urgent.documents` as (type, downloaded bytes).
async fn documents(reply: &ehealth_tests::http::Reply) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for document in reply.body["urgent"]["documents"].as_array().unwrap() {
        let bytes = download(document["url"].as_str().unwrap()).await;
        out.push((document["type"].as_str().unwrap().to_owned(), bytes));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_request_goes_from_draft_to_signed_with_its_documents_by_status() {
    let w = world().await;
    let mut events = w.app.subscribe("contract_request.status_changed").await;
    let draft = draft(&w, &w.clinic.token, true).await;
    let job = create(&w, &draft).await;
    assert_eq!(job.status_code(), 201, "{job:?}");
    let id = job.assert_processed();
    assert_eq!(id, draft.id);

    // NEW: document 003's fields, the reference data snapshotted, two documents that download the uploads.
    let reply = read(&w, &w.clinic.token, id).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["meta"]["code"], 200);
    assert_eq!(reply.body["meta"]["type"], "object");
    let data = &reply.body["data"];
    assert_eq!(data["id"], json!(id));
    assert_eq!(
        field_names(data),
        example_fields(&[
            "contractor_rmsp_amount",
            "contractor_divisions",
            "contractor_employee_divisions",
            "external_contractor_flag",
            "external_contractors",
        ]),
        "the CAPITATION example's fields, no more"
    );
    assert_eq!(data["contract_type"], "CAPITATION");
    assert_eq!(data["status"], "NEW");
    assert_eq!(
        data["contractor_legal_entity"]["id"],
        json!(w.clinic.legal_entity_id)
    );
    assert_eq!(data["contractor_legal_entity"]["name"], "Клініка Ноунейм");
    assert_eq!(data["contractor_legal_entity"]["edrpou"], json!(w.edrpou));
    assert_eq!(
        data["contractor_legal_entity"]["addresses"][0]["zip"],
        "02090"
    );
    assert_eq!(
        data["contractor_owner"],
        json!({"id": w.clinic.user_id, "party": party("Петро")})
    );
    assert_eq!(data["contractor_payment_details"]["MFO"], "351005");
    assert_eq!(data["contractor_rmsp_amount"], 50000);
    let division = &data["contractor_divisions"][0];
    assert_eq!(division["id"], json!(w.division));
    assert_eq!(division["phones"][0]["number"], "+380503410870");
    assert_eq!(
        division["working_hours"]["mon"][1],
        json!(["14.00", "18.00"])
    );
    assert_eq!(division["mountain_group"], false);
    let employee = &data["contractor_employee_divisions"][0];
    assert_eq!(employee["employee"]["id"], json!(w.doctor));
    assert_eq!(employee["employee"]["party"]["first_name"], "Ганна");
    assert_eq!(
        employee["employee"]["speciality"]["speciality"],
        "THERAPIST"
    );
    assert_eq!(employee["staff_units"], 0.5);
    assert_eq!(employee["declaration_limit"], 2000);
    for field in [
        "external_contractor_flag",
        "nhs_signer",
        "nhs_legal_entity",
        "nhs_contract_price",
        "status_reason",
        "contract_number",
        "contract_id",
        "printout_content",
        "previous_request_id",
        "assignee_id",
    ] {
        assert!(
            data.get(field).is_some_and(Value::is_null),
            "{field}: {data}"
        );
    }
    assert_eq!(data["external_contractors"], json!([]));
    assert!(data.get("medical_programs").is_none());
    let docs = documents(&reply).await;
    assert_eq!(
        docs,
        vec![
            ("CONTRACT_REQUEST_STATUTE".to_owned(), draft.statute.clone()),
            (
                "CONTRACT_REQUEST_ADDITIONAL_DOCUMENT".to_owned(),
                draft.additional.clone()
            ),
        ]
    );

    // A later change of the reference data does not change the request.
    import(&w.app, json!({"employees": [{"id": w.doctor, "legal_entity_id": w.clinic.legal_entity_id, "party": party("Змінена")}]})).await;

    // NHS reads it too; another clinic may not.
    assert_eq!(read(&w, &w.nhs.token, id).await.status, StatusCode::OK);
    let other = w.app.party("MSP", ClientType::Msp, ALL_SCOPES).await;
    read(&w, &other.token, id)
        .await
        .assert_error(403, NOT_ALLOWED_TO_VIEW);

    // The contractor cannot do NHS's part, nor NHS the contractor's.
    act(
        &w,
        &w.clinic.token,
        id,
        "assign",
        Some(json!({"employee_id": w.nhs.user_id})),
    )
    .await
    .assert_failed(403, NOT_ALLOWED);
    act(&w, &w.nhs.token, id, "approve_msp", None)
        .await
        .assert_failed(403, NOT_ALLOWED);
    act(&w, &w.nhs.token, id, "approve", Some(approval(&w)))
        .await
        .assert_failed(409, INCORRECT_STATUS);

    act(
        &w,
        &w.nhs.token,
        id,
        "assign",
        Some(json!({"employee_id": w.nhs.user_id})),
    )
    .await
    .assert_processed();
    act(&w, &w.nhs.token, id, "approve", Some(approval(&w)))
        .await
        .assert_processed();
    let approved = read(&w, &w.clinic.token, id).await;
    let number = approved.body["data"]["contract_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(number.len(), 19, "{number}");
    assert_eq!(
        approved.body["data"]["nhs_legal_entity"]["id"],
        json!(w.nhs.legal_entity_id)
    );
    assert_eq!(
        approved.body["data"]["nhs_signer"]["party"]["first_name"],
        "Олена"
    );
    assert_eq!(approved.body["data"]["assignee_id"], json!(w.nhs.user_id));
    assert_eq!(
        approved.body["data"]["contractor_employee_divisions"][0]["employee"]["party"]
            ["first_name"],
        "Ганна"
    );
    act(&w, &w.clinic.token, id, "approve_msp", None)
        .await
        .assert_processed();

    let nhs_signed = b"NHS-signed PKCS7 envelope".to_vec();
    let signed = json!({"signed_content": STANDARD.encode(&nhs_signed), "signed_content_encoding": "base64"});
    act(&w, &w.clinic.token, id, "sign_nhs", Some(signed.clone()))
        .await
        .assert_failed(403, NOT_ALLOWED);
    act(&w, &w.nhs.token, id, "sign_nhs", Some(signed))
        .await
        .assert_processed();
    let reply = read(&w, &w.nhs.token, id).await;
    assert_eq!(reply.body["data"]["status"], "NHS_SIGNED");
    assert_eq!(
        documents(&reply).await[2],
        ("SIGNED_CONTENT".to_owned(), nhs_signed)
    );

    let both_signed = b"NHS- and MSP-signed PKCS7 envelope".to_vec();
    act(
        &w,
        &w.clinic.token,
        id,
        "sign_msp",
        Some(json!({"signed_content": STANDARD.encode(&both_signed)})),
    )
    .await
    .assert_processed();

    // SIGNED: three documents.
    let reply = read(&w, &w.clinic.token, id).await;
    assert_eq!(reply.body["data"]["status"], "SIGNED");
    assert_eq!(
        documents(&reply).await,
        vec![
            ("CONTRACT_REQUEST_STATUTE".to_owned(), draft.statute.clone()),
            (
                "CONTRACT_REQUEST_ADDITIONAL_DOCUMENT".to_owned(),
                draft.additional.clone()
            ),
            ("SIGNED_CONTENT".to_owned(), both_signed),
        ]
    );

    // Terminate from SIGNED: 409.
    act(
        &w,
        &w.nhs.token,
        id,
        "terminate",
        Some(json!({"status_reason": "why"})),
    )
    .await
    .assert_failed(409, INCORRECT_STATUS);

    // Every status change was published, in order.
    let mut statuses = Vec::new();
    while statuses.len() < 6 {
        let event = events
            .next(Duration::from_secs(10))
            .await
            .expect("a StatusChangeEvent");
        assert_eq!(event["entity_type"], "contract_request");
        assert_eq!(event["entity_id"], json!(id));
        statuses.push(
            event["properties"]["status"]["new_value"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        statuses,
        [
            "NEW",
            "IN_PROCESS",
            "APPROVED",
            "PENDING_NHS_SIGN",
            "NHS_SIGNED",
            "SIGNED"
        ]
    );
    events.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sign_leaves_no_signed_content_and_terminate_sets_end_date_today() {
    // The worker's today (the end date) and the test's must be the same day.
    ehealth_tests::within_one_utc_day().await;
    let w = world().await;
    let draft = created(&w).await;
    let signed = json!({"signed_content": STANDARD.encode(b"too early")});
    act(&w, &w.nhs.token, draft.id, "sign_nhs", Some(signed))
        .await
        .assert_failed(409, INCORRECT_STATUS);
    let prefix = format!("{}/signed_content/", draft.id);
    let bucket = w.app.config.s3_bucket_contract_requests.clone();
    let gone = w
        .app
        .eventually(Duration::from_secs(10), || async {
            w.app
                .query("SELECT count(*) FROM object_deletions WHERE bucket = $1 AND key LIKE $2 || '%'", &[&bucket, &prefix])
                .await[0]
                .get::<_, i64>(0)
                == 0
        })
        .await;
    assert!(gone, "the refused sign's object deletion did not run");
    let keys: Vec<String> = w
        .app
        .query(
            "SELECT command->>'content_key' FROM jobs WHERE type = 'contract_request.sign_nhs'",
            &[],
        )
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with(&prefix), "{keys:?}");
    let storage = ehealth_infra::storage::Storage::new(&w.app.config);
    assert_eq!(
        storage.head(&bucket, &keys[0]).await.unwrap(),
        None,
        "the refused sign's object is gone"
    );
    let reply = read(&w, &w.clinic.token, draft.id).await;
    assert_eq!(
        reply.body["urgent"]["documents"].as_array().unwrap().len(),
        2
    );

    act(
        &w,
        &w.clinic.token,
        draft.id,
        "terminate",
        Some(json!({"status_reason": "Не відповідає попереднім домовленостям"})),
    )
    .await
    .assert_processed();
    let reply = read(&w, &w.clinic.token, draft.id).await;
    assert_eq!(reply.body["data"]["status"], "TERMINATED");
    assert_eq!(
        reply.body["data"]["end_date"],
        json!(Utc::now().date_naive())
    );
    assert_eq!(
        reply.body["data"]["status_reason"],
        "Не відповідає попереднім домовленостям"
    );
    assert_eq!(documents(&reply).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_checks_token_expiry_scope_user_client_context_then_existence() {
    let w = world().await;
    let draft = created(&w).await;
    let id = draft.id;
    let path = format!("/api/contract_requests/capitation/{id}");

    // 401: no token, an unknown one, an expired one.
    w.app
        .api("")
        .get(&path)
        .await
        .assert_error(401, "unauthorized");
    w.app
        .api("not-a-token")
        .get(&path)
        .await
        .assert_error(401, "unauthorized");
    let expired = w
        .app
        .token(
            w.clinic.user_id,
            ClientType::Msp,
            ALL_SCOPES,
            chrono::Duration::seconds(-1),
        )
        .await;
    w.app
        .api(&expired)
        .get(&path)
        .await
        .assert_error(401, "unauthorized");

    // 403 scope.
    let no_scope = w
        .app
        .token(
            w.clinic.user_id,
            ClientType::Msp,
            "contract_request:create",
            chrono::Duration::hours(1),
        )
        .await;
    w.app
        .api(&no_scope)
        .get(&path)
        .await
        .assert_error(403, "invalid scopes");

    // 403 user is not active (a user of the clinic deactivated before its first request).
    let client = w.app.pool.get().await.unwrap();
    let inactive_user = identity::create_user(
        &client,
        w.clinic.legal_entity_id,
        Some("DOCTOR"),
        Some("APPROVED"),
        false,
    )
    .await
    .unwrap();
    let inactive = w
        .app
        .token(
            inactive_user,
            ClientType::Msp,
            ALL_SCOPES,
            chrono::Duration::hours(1),
        )
        .await;
    w.app
        .api(&inactive)
        .get(&path)
        .await
        .assert_error(403, "user is not active");

    // 403 Client is not active.
    let suspended = w.app.party("MSP", ClientType::Msp, ALL_SCOPES).await;
    identity::set_legal_entity_status(&client, suspended.legal_entity_id, "SUSPENDED")
        .await
        .unwrap();
    w.app
        .api(&suspended.token)
        .get(&path)
        .await
        .assert_error(403, "Client is not active");

    // 403 context: another clinic, a pharmacy on a capitation request, a MIS token.
    let other = w.app.party("MSP", ClientType::Msp, ALL_SCOPES).await;
    w.app
        .api(&other.token)
        .get(&path)
        .await
        .assert_error(403, NOT_ALLOWED_TO_VIEW);
    let pharmacy = clinic_user_as(&w, ClientType::Pharmacy).await;
    w.app
        .api(&pharmacy)
        .get(&path)
        .await
        .assert_error(403, NOT_ALLOWED_TO_VIEW);
    let mis = clinic_user_as(&w, ClientType::Mis).await;
    w.app
        .api(&mis)
        .get(&path)
        .await
        .assert_error(403, NOT_ALLOWED_TO_VIEW);

    // 404 with the id; the wrong type's path is 404 too; an unknown type is no route.
    let unknown = Uuid::new_v4();
    w.app
        .api(&w.nhs.token)
        .get(&format!("/api/contract_requests/capitation/{unknown}"))
        .await
        .assert_error(
            404,
            &format!("Contract request with id={unknown} doesn't exist"),
        );
    w.app
        .api(&w.nhs.token)
        .get(&format!("/api/contract_requests/reimbursement/{id}"))
        .await
        .assert_error(404, &format!("Contract request with id={id} doesn't exist"));
    assert_eq!(
        w.app
            .api(&w.nhs.token)
            .get(&format!("/api/contract_requests/other/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // NHS reads every request, in either case of the path's type; the owner too.
    for path in [
        path.clone(),
        format!("/api/contract_requests/CAPITATION/{id}"),
    ] {
        let reply = w.app.api(&w.nhs.token).get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    // Actions on unknown requests are 404 at once.
    w.app
        .api(&w.nhs.token)
        .request(
            Method::PATCH,
            &format!("/api/contract_requests/capitation/{unknown}/actions/terminate"),
            None,
            &[],
        )
        .await
        .assert_error(
            404,
            &format!("Contract request with id={unknown} doesn't exist"),
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_body_that_does_not_fit_the_schema_is_422_naming_every_entry() {
    let w = world().await;
    let draft = draft(&w, &w.clinic.token, true).await;
    let mut bad = body(&w, "x", "92eb5ffee6ae2fec3ad71c777531578f");
    bad["contractor_payment_details"]["MFO"] = json!("12345");
    bad["contractor_rmsp_amount"] = json!(-1);
    bad["contractor_divisions"] = json!([]);
    bad.as_object_mut().unwrap().remove("id_form");
    bad["unexpected"] = json!(true);
    let reply = w
        .app
        .api(&w.clinic.token)
        .request(
            Method::POST,
            &format!("/api/contract_requests/capitation/{}", draft.id),
            Some(bad),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["error"]["type"], "validation_failed");
    let entries: Vec<&str> = reply.body["error"]["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    for entry in [
        "$.contractor_payment_details.MFO",
        "$.contractor_rmsp_amount",
        "$.contractor_divisions",
        "$.id_form",
        "$.statute_md5",
        "$.unexpected",
    ] {
        assert!(entries.contains(&entry), "{entry} in {entries:?}");
    }
    // The capitation body on the reimbursement path: a pharmacy-only type for an MSP token is 403 first.
    let reply = w
        .app
        .api(&w.clinic.token)
        .request(
            Method::POST,
            &format!("/api/contract_requests/reimbursement/{}", draft.id),
            Some(body(&w, MD5_OF_A, MD5_OF_A)),
            &[],
        )
        .await;
    reply.assert_error(403, NOT_ALLOWED);
    let msp_pharmacy = clinic_user_as(&w, ClientType::MspPharmacy).await;
    let reply = w
        .app
        .api(&msp_pharmacy)
        .request(
            Method::POST,
            &format!("/api/contract_requests/reimbursement/{}", draft.id),
            Some(body(&w, MD5_OF_A, MD5_OF_A)),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    let entries: Vec<&str> = reply.body["error"]["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert!(entries.contains(&"$.medical_program_id"), "{entries:?}");
    // A sign with content that is not base64 is 422 before any job.
    let reply = w
        .app
        .api(&w.nhs.token)
        .request(
            Method::PATCH,
            &format!(
                "/api/contract_requests/capitation/{}/actions/sign_nhs",
                draft.id
            ),
            Some(json!({"signed_content": "%%%"})),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(
        reply.body["error"]["invalid"][0]["entry"],
        "$.signed_content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_documents_are_missing_or_differ_fails_the_job_409() {
    let w = world().await;
    // Only the statute uploaded.
    let half = draft(&w, &w.clinic.token, false).await;
    let job = create(&w, &half).await;
    assert_eq!(job.status(), "failed");
    assert_eq!(job.status_code(), 409);
    assert!(
        job.data["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to move uploaded documents"),
        "{job:?}"
    );
    // Nothing uploaded at all.
    let reply = w
        .app
        .api(&w.clinic.token)
        .request(Method::POST, "/api/contract_requests/capitation", None, &[])
        .await;
    let empty: Uuid = reply.body["data"]["id"].as_str().unwrap().parse().unwrap();
    let api = w.app.api(&w.clinic.token);
    let reply = api
        .request(
            Method::POST,
            &format!("/api/contract_requests/capitation/{empty}"),
            Some(body(&w, MD5_OF_A, MD5_OF_A)),
            &[],
        )
        .await;
    api.finished(reply)
        .await
        .assert_failed(409, STATUTE_NOT_UPLOADED);
    // Both uploaded, the statute's MD5 another one.
    let full = draft(&w, &w.clinic.token, true).await;
    let additional_md5 = md5(&w.app, &full.additional).await;
    let reply = api
        .request(
            Method::POST,
            &format!("/api/contract_requests/capitation/{}", full.id),
            Some(body(&w, MD5_OF_A, &additional_md5)),
            &[],
        )
        .await;
    api.finished(reply)
        .await
        .assert_failed(409, STATUTE_MD5_MISMATCH);
    // A division of another clinic: 422 naming it.
    let mut foreign = body(&w, &md5(&w.app, &full.statute).await, &additional_md5);
    foreign["contractor_divisions"] = json!([w.division, Uuid::new_v4()]);
    let reply = api
        .request(
            Method::POST,
            &format!("/api/contract_requests/capitation/{}", full.id),
            Some(foreign),
            &[],
        )
        .await;
    let job = api.finished(reply).await;
    assert_eq!(
        (job.status(), job.status_code()),
        ("failed", 422),
        "{job:?}"
    );
    assert_eq!(
        job.data["error"]["invalid"][0]["entry"],
        "$.contractor_divisions[1]"
    );
    // Nothing was created.
    read(&w, &w.nhs.token, full.id).await.assert_error(
        404,
        &format!("Contract request with id={} doesn't exist", full.id),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_pages_what_the_caller_may_see() {
    let w = world().await;
    let first = created(&w).await;
    let second = created(&w).await;
    act(
        &w,
        &w.nhs.token,
        second.id,
        "assign",
        Some(json!({"employee_id": w.nhs.user_id})),
    )
    .await
    .assert_processed();
    act(&w, &w.nhs.token, second.id, "approve", Some(approval(&w)))
        .await
        .assert_processed();
    let number = read(&w, &w.nhs.token, second.id).await.body["data"]["contract_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = w.app.party("MSP", ClientType::Msp, ALL_SCOPES).await;

    let ids = |reply: &ehealth_tests::http::Reply| -> Vec<Uuid> {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let clinic = w.app.api(&w.clinic.token);
    let nhs = w.app.api(&w.nhs.token);
    let all = clinic.get("/api/contract_requests/capitation").await;
    assert_eq!(ids(&all), vec![second.id, first.id]);
    assert_eq!(
        all.body["paging"],
        json!({"page_number": 1, "page_size": 50, "total_entries": 2, "total_pages": 1})
    );
    let page = clinic
        .get("/api/contract_requests/capitation?page=2&page_size=1")
        .await;
    assert_eq!(ids(&page), vec![first.id]);
    assert_eq!(page.body["paging"]["total_pages"], 2);
    assert_eq!(
        ids(&clinic
            .get("/api/contract_requests/capitation?status=NEW")
            .await),
        vec![first.id]
    );
    assert_eq!(
        ids(&clinic
            .get(&format!(
                "/api/contract_requests/capitation?contract_number={number}"
            ))
            .await),
        vec![second.id]
    );
    assert_eq!(
        ids(&nhs
            .get(&format!(
                "/api/contract_requests/capitation?edrpou={}",
                w.edrpou
            ))
            .await),
        vec![second.id, first.id]
    );
    assert_eq!(
        ids(&nhs
            .get(&format!(
                "/api/contract_requests/capitation?contractor_legal_entity_id={}&status=APPROVED",
                w.clinic.legal_entity_id
            ))
            .await),
        vec![second.id]
    );
    assert!(ids(&nhs.get("/api/contract_requests/reimbursement").await).is_empty());
    // Another clinic sees none of them and may not ask for them.
    assert!(ids(&w
        .app
        .api(&other.token)
        .get("/api/contract_requests/capitation")
        .await)
    .is_empty());
    w.app
        .api(&other.token)
        .get(&format!(
            "/api/contract_requests/capitation?contractor_legal_entity_id={}",
            w.clinic.legal_entity_id
        ))
        .await
        .assert_error(403, NOT_ALLOWED_TO_VIEW);
    // Bad filters are 422.
    for (query, entry) in [
        ("status=WHATEVER", "$.status"),
        ("edrpou=12", "$.edrpou"),
        ("page_size=101", "$.page_size"),
        (
            "contractor_legal_entity_id=x",
            "$.contractor_legal_entity_id",
        ),
    ] {
        let reply = nhs
            .get(&format!("/api/contract_requests/capitation?{query}"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {reply:?}"
        );
        assert_eq!(reply.body["error"]["invalid"][0]["entry"], entry, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_import_is_validated_whole_written_in_one_transaction_and_idempotent() {
    let app = TestApp::spawn_without_worker().await;
    let example: ReferenceDocument =
        serde_json::from_str(include_str!("../../docs/reference-example.json")).unwrap();
    let mut client = app.pool.get().await.unwrap();
    let first = reference::import(&mut client, &example).await.unwrap();
    assert_eq!(
        (first.legal_entities, first.divisions, first.employees),
        (2, 1, 2)
    );
    let dump = |sql: &'static str| {
        let app = &app;
        async move {
            app.query(sql, &[])
                .await
                .iter()
                .map(|r| r.get::<_, Value>(0))
                .collect::<Vec<_>>()
        }
    };
    let before = (
        dump("SELECT to_jsonb(l) - 'inserted_at' - 'updated_at' FROM legal_entities l ORDER BY id")
            .await,
        dump("SELECT to_jsonb(d) - 'inserted_at' - 'updated_at' FROM divisions d ORDER BY id")
            .await,
        dump("SELECT to_jsonb(u) - 'inserted_at' FROM users u ORDER BY id").await,
    );
    reference::import(&mut client, &example).await.unwrap();
    let after = (
        dump("SELECT to_jsonb(l) - 'inserted_at' - 'updated_at' FROM legal_entities l ORDER BY id")
            .await,
        dump("SELECT to_jsonb(d) - 'inserted_at' - 'updated_at' FROM divisions d ORDER BY id")
            .await,
        dump("SELECT to_jsonb(u) - 'inserted_at' FROM users u ORDER BY id").await,
    );
    assert_eq!(before, after);

    // A bad entry is named and nothing of the document is written.
    let new_le = Uuid::new_v4();
    let unknown = Uuid::new_v4();
    let bad: ReferenceDocument = serde_json::from_value(json!({
        "legal_entities": [{"id": new_le, "name": "Нова", "edrpou": "12345678", "type": "MSP"}],
        "divisions": [
            {"id": Uuid::new_v4(), "legal_entity_id": new_le, "name": "A"},
            {"id": Uuid::new_v4(), "legal_entity_id": new_le, "name": "B"},
            {"id": Uuid::new_v4(), "legal_entity_id": unknown, "name": "C"},
        ],
    }))
    .unwrap();
    let error = reference::import(&mut client, &bad).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("divisions[2].legal_entity_id: unknown legal entity {unknown}")
    );
    assert!(app
        .query("SELECT 1 FROM legal_entities WHERE id = $1", &[&new_le])
        .await
        .is_empty());
    let hours: ReferenceDocument = serde_json::from_value(json!({
        "divisions": [{"id": Uuid::new_v4(), "legal_entity_id": new_le, "name": "A", "working_hours": {"mon": [["8", "12"]]}}],
    })).unwrap();
    assert_eq!(
        reference::validate(&hours, &[new_le].into())
            .unwrap_err()
            .to_string(),
        "divisions[0].working_hours.mon: must be a list of [\"HH.MM\",\"HH.MM\"] pairs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pharmacy_creates_a_reimbursement_request_shown_as_document_003s_second_example_and_rebuilt_alike(
) {
    let w = world().await;
    let pharmacy = clinic_user_as(&w, ClientType::Pharmacy).await;
    let api = w.app.api(&pharmacy);
    let reply = api
        .request(
            Method::POST,
            "/api/contract_requests/REIMBURSEMENT",
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let data = &reply.body["data"];
    let id: Uuid = data["id"].as_str().unwrap().parse().unwrap();
    let (statute, additional) = (b"%PDF statute".to_vec(), b"%PDF additional".to_vec());
    put(data["statute_url"].as_str().unwrap(), &statute).await;
    put(
        data["additional_document_url"].as_str().unwrap(),
        &additional,
    )
    .await;
    let program = Uuid::new_v4();
    let mut body = body(
        &w,
        &md5(&w.app, &statute).await,
        &md5(&w.app, &additional).await,
    );
    let object = body.as_object_mut().unwrap();
    object.remove("contractor_rmsp_amount");
    object.remove("contractor_employee_divisions");
    object.insert("medical_program_id".to_owned(), json!(program));
    let reply = api
        .request(
            Method::POST,
            &format!("/api/contract_requests/reimbursement/{id}"),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(api.finished(reply).await.assert_processed(), id);

    let reply = api
        .get(&format!("/api/contract_requests/reimbursement/{id}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let data = &reply.body["data"];
    assert_eq!(
        field_names(data),
        example_fields(&["medical_programs"]),
        "the REIMBURSEMENT example's fields, no more"
    );
    assert_eq!(data["contract_type"], "REIMBURSEMENT");
    assert_eq!(data["medical_programs"], json!([program]));
    // The capitation path does not show it; an MSP token may not read reimbursement requests.
    w.app
        .api(&w.nhs.token)
        .get(&format!("/api/contract_requests/capitation/{id}"))
        .await
        .assert_error(404, &format!("Contract request with id={id} doesn't exist"));
    w.app
        .api(&w.clinic.token)
        .get(&format!("/api/contract_requests/reimbursement/{id}"))
        .await
        .assert_error(403, NOT_ALLOWED_TO_VIEW);

    // A capitation request too, moved on; then a rebuild writes exactly the live rows.
    let capitation = created(&w).await;
    act(
        &w,
        &w.nhs.token,
        capitation.id,
        "assign",
        Some(json!({"employee_id": w.nhs.user_id})),
    )
    .await
    .assert_processed();
    let dump = || async {
        ehealth_infra::projection::dump_table(&w.app.pool.get().await.unwrap(), "contract_requests")
            .await
            .unwrap()
    };
    let live = dump().await;
    assert_eq!(live.len(), 2);
    let mut client = w.app.pool.get().await.unwrap();
    ehealth_infra::projection::rebuild_all(&mut client)
        .await
        .unwrap();
    assert_eq!(dump().await, live);
}
