//! The worker's scheduler: service requests past their expiration date are recalled (`autoexpired`) and
//! contract requests past their start date that are not signed are terminated (`AUTO_EXPIRED`), both as
//! ordinary jobs of the system actor that the event log shows; one round at a time across workers, and never
//! a second job for a request whose job is pending.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use ehealth_domain::{
    contract_request::{
        self, Approved, ContractRequestAggregate, ContractType, Created, LegalEntitySnapshot,
        PaymentDetails, PersonSnapshot, StoredDocument,
    },
    service_request::{self, ServiceRequestAggregate},
    Actor, ClientType,
};
use ehealth_infra::{
    amqp::Publisher,
    db,
    event_store::{self, Metadata},
    projection::Projection,
};
use ehealth_tests::{wait_for, within_one_utc_day, TestApp};
use ehealth_worker::scheduler::{self, Scheduled, AUTO_EXPIRED, LOCK_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// How long a test waits for the worker's scheduler (a 1 s interval) and the job it submits.
const WAIT: Duration = Duration::from_secs(30);

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// Appends `events` to `stream` and projects them, as the worker would have when they happened.
async fn record<A: Projection>(app: &TestApp, stream: Uuid, events: Vec<A::Event>) {
    let mut client = app.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let loaded = event_store::load::<A>(&tx, stream).await.unwrap();
    let metadata = Metadata {
        causation_id: None,
        correlation_id: "scheduler-test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id: Uuid::new_v4(),
        client_type: "MSP".to_owned(),
    };
    let appended = event_store::append::<A>(&tx, stream, &loaded, &events, &metadata)
        .await
        .unwrap();
    let state = events.iter().fold(loaded.state.clone(), A::apply);
    A::project(
        &tx,
        stream,
        &state,
        appended.version,
        appended.recorded_at,
        appended.recorded_at,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// A service request of `legal_entity_id` with this expiration date, and what happened to it since.
async fn service_request(
    app: &TestApp,
    legal_entity_id: Uuid,
    expiration_date: Option<NaiveDate>,
    then: Vec<service_request::Event>,
) -> Uuid {
    let id = Uuid::new_v4();
    let created = service_request::Event::Created {
        id,
        patient_id: Uuid::new_v4(),
        category: "laboratory_procedure".to_owned(),
        code: "LAB-001".to_owned(),
        program_id: None,
        expiration_date,
        requester_legal_entity_id: legal_entity_id,
        requester_user_id: Uuid::new_v4(),
        program_processing_status: None,
    };
    let events = std::iter::once(created).chain(then).collect();
    record::<ServiceRequestAggregate>(app, id, events).await;
    id
}

async fn sr_status(app: &TestApp, id: Uuid) -> (String, Option<String>) {
    let rows = app
        .query(
            "SELECT status, status_reason FROM service_requests WHERE id = $1",
            &[&id],
        )
        .await;
    (rows[0].get(0), rows[0].get(1))
}

/// `(type, status, actor)` of every job of `stream`.
async fn jobs_of(app: &TestApp, stream: Uuid) -> Vec<(String, String, Value)> {
    app.query(
        "SELECT type, status, actor FROM jobs WHERE stream_id = $1 ORDER BY inserted_at",
        &[&stream],
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn count_jobs(app: &TestApp, job_type: &str) -> i64 {
    app.query("SELECT count(*) FROM jobs WHERE type = $1", &[&job_type])
        .await[0]
        .get(0)
}

/// A worker whose scheduler runs every second.
async fn app_with_fast_scheduler() -> TestApp {
    let mut app = TestApp::spawn_without_worker().await;
    app.config.scheduler_interval_seconds = 1;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_service_request_is_recalled_through_a_job_of_the_system_and_a_current_one_is_left(
) {
    // `last_day_today` is due once the worker's scheduler sees tomorrow.
    within_one_utc_day().await;
    let mut app = app_with_fast_scheduler().await;
    let clinic = app.msp().await;
    let le = clinic.legal_entity_id;
    let expired = service_request(&app, le, Some(today() - days(1)), vec![]).await;
    let last_day_today = service_request(&app, le, Some(today()), vec![]).await;
    let later = service_request(&app, le, Some(today() + days(30)), vec![]).await;
    let open_ended = service_request(&app, le, None, vec![]).await;
    let already_recalled = service_request(
        &app,
        le,
        Some(today() - days(3)),
        vec![service_request::Event::Recalled {
            reason: Some("duplicate".to_owned()),
        }],
    )
    .await;
    app.start_worker();

    let recalled = wait_for(WAIT, || async {
        let (status, reason) = sr_status(&app, expired).await;
        (status == "recalled").then_some(reason)
    })
    .await
    .expect("the scheduler recalled the expired request");
    assert_eq!(recalled.as_deref(), Some(service_request::AUTOEXPIRED));

    // One ordinary job, of the system actor.
    let jobs = jobs_of(&app, expired).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let (job_type, status, actor) = &jobs[0];
    assert_eq!(job_type, "service_request.expire");
    assert_eq!(status, "processed");
    assert_eq!(*actor, serde_json::to_value(Actor::system()).unwrap());
    assert_eq!(
        *actor,
        json!({"user_id": Uuid::nil(), "legal_entity_id": Uuid::nil(), "client_type": "NHS"})
    );
    let job_id: Uuid = app
        .query("SELECT id FROM jobs WHERE stream_id = $1", &[&expired])
        .await[0]
        .get(0);

    // The stream's history shows the recall, caused by that job, done by the system.
    let auditor = app.party("NHS", ClientType::Nhs, "audit:read").await;
    let reply = app
        .api(&auditor.token)
        .get(&format!("/api/audit/streams/{expired}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let events = reply.body["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let recall = &events[1];
    assert_eq!(recall["event_type"], "recalled");
    assert_eq!(recall["data"]["reason"], "autoexpired");
    assert_eq!(recall["metadata"]["causation_id"], job_id.to_string());
    assert_eq!(recall["metadata"]["actor_user_id"], Uuid::nil().to_string());
    assert_eq!(
        recall["metadata"]["legal_entity_id"],
        Uuid::nil().to_string()
    );
    assert_eq!(recall["metadata"]["client_type"], "NHS");
    assert!(recall["metadata"]["correlation_id"]
        .as_str()
        .unwrap()
        .starts_with("scheduler-"));
    assert_eq!(reply.body["data"]["state"]["status"], "recalled");
    assert_eq!(reply.body["data"]["chain_valid"], true);

    // The requester sees it recalled.
    let reply = app
        .api(&clinic.token)
        .get(&format!("/api/service_requests/{expired}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["data"]["status"], "recalled");
    assert_eq!(reply.body["data"]["status_reason"], "autoexpired");

    // The round that recalled it looked at the others too: no job for any of them.
    for (id, status) in [
        (last_day_today, "active"),
        (later, "active"),
        (open_ended, "active"),
        (already_recalled, "recalled"),
    ] {
        assert_eq!(jobs_of(&app, id).await, Vec::new(), "{id}");
        assert_eq!(sr_status(&app, id).await.0, status, "{id}");
    }
    assert_eq!(
        sr_status(&app, already_recalled).await.1.as_deref(),
        Some("duplicate")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_of_several_workers_never_submit_a_second_job_for_a_request() {
    // No worker yet: the jobs stay pending, as if the workers were busy.
    let mut app = TestApp::spawn_without_worker().await;
    let clinic = app.msp().await;
    let mut expired = Vec::new();
    for n in 1..=3 {
        expired.push(
            service_request(
                &app,
                clinic.legal_entity_id,
                Some(today() - days(n)),
                vec![],
            )
            .await,
        );
    }
    // The scheduler runs as the runtime role, like a worker.
    let pool = db::pool(&app.config.database_url, 8).unwrap();
    let publisher = Publisher::new(&app.config);

    // Four workers' rounds at once.
    let rounds = futures_util::future::join_all(
        (0..4).map(|_| scheduler::schedule_once(&pool, &publisher, today())),
    )
    .await;
    let rounds: Vec<Scheduled> = rounds.into_iter().map(Result::unwrap).collect();
    assert!(rounds.iter().any(|r| r.ran), "{rounds:?}");
    assert_eq!(
        rounds.iter().map(|r| r.submitted).sum::<usize>(),
        3,
        "{rounds:?}"
    );
    assert_eq!(count_jobs(&app, "service_request.expire").await, 3);
    for id in &expired {
        let jobs = jobs_of(&app, *id).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].1, "pending");
    }

    // A later round finds the same requests due, and their jobs pending: nothing new.
    let later = scheduler::schedule_once(&pool, &publisher, today())
        .await
        .unwrap();
    assert_eq!(
        later,
        Scheduled {
            ran: true,
            expired_service_requests: 3,
            overdue_contract_requests: 0,
            submitted: 0,
        }
    );

    // While another worker's round holds the lock, a round does nothing at all.
    {
        let mut client = app.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .unwrap();
        let blocked = scheduler::schedule_once(&pool, &publisher, today())
            .await
            .unwrap();
        assert_eq!(blocked, Scheduled::default());
        tx.rollback().await.unwrap();
    }

    // The worker runs the three jobs (its own scheduler's first round adds none); then nothing is due.
    app.start_worker();
    for id in &expired {
        let done = wait_for(WAIT, || async {
            (sr_status(&app, *id).await.0 == "recalled").then_some(())
        })
        .await;
        assert!(done.is_some(), "{id} recalled");
    }
    let after = scheduler::schedule_once(&pool, &publisher, today())
        .await
        .unwrap();
    assert_eq!(after.expired_service_requests, 0);
    assert_eq!(after.submitted, 0);
    assert_eq!(count_jobs(&app, "service_request.expire").await, 3);
}

// Contract requests ---------------------------------------------------------------------------------------

fn document(key: String) -> StoredDocument {
    StoredDocument {
        key,
        size: 10,
        etag: "0123456789abcdef0123456789abcdef".to_owned(),
    }
}

fn person() -> PersonSnapshot {
    PersonSnapshot {
        id: Uuid::new_v4(),
        party: json!({"first_name": "Olena", "last_name": "Shevchenko", "second_name": "Petrivna"}),
    }
}

fn legal_entity(id: Uuid) -> LegalEntitySnapshot {
    LegalEntitySnapshot {
        id,
        name: "Clinic".to_owned(),
        edrpou: "12345678".to_owned(),
        addresses: json!([]),
    }
}

fn contract_created(id: Uuid, contractor: Uuid, start_date: NaiveDate) -> contract_request::Event {
    contract_request::Event::Created(Box::new(Created {
        id,
        contract_type: ContractType::Capitation,
        contractor_legal_entity: legal_entity(contractor),
        contractor_owner: person(),
        contractor_base: "statute".to_owned(),
        contractor_payment_details: PaymentDetails {
            bank_name: "Bank".to_owned(),
            mfo: "123456".to_owned(),
            payer_account: "2600123456".to_owned(),
        },
        contractor_rmsp_amount: Some(100),
        contractor_divisions: Vec::new(),
        contractor_employee_divisions: Vec::new(),
        external_contractor_flag: None,
        external_contractors: Vec::new(),
        id_form: "PMD_1".to_owned(),
        start_date,
        end_date: start_date + days(365),
        previous_request_id: None,
        parent_contract_id: None,
        medical_programs: Vec::new(),
        nhs_signer_base: None,
        nhs_payment_method: None,
        issue_city: None,
        statute: document(contract_request::statute_key(id)),
        additional_document: document(contract_request::additional_document_key(id)),
        created_by: Uuid::new_v4(),
    }))
}

/// The events that take a created request to SIGNED.
fn signed(id: Uuid) -> Vec<contract_request::Event> {
    use contract_request::Event;
    let content = document(format!("{id}/signed_content/{}", Uuid::new_v4()));
    vec![
        Event::Assigned {
            assignee_id: Uuid::new_v4(),
        },
        Event::Approved(Box::new(Approved {
            contract_number: contract_request::contract_number(id),
            nhs_legal_entity: legal_entity(Uuid::new_v4()),
            nhs_signer: person(),
            nhs_signer_base: "order".to_owned(),
            nhs_contract_price: 1000.0,
            nhs_payment_method: "BACKWARD".to_owned(),
            issue_city: "Kyiv".to_owned(),
        })),
        Event::MspApproved,
        Event::NhsSigned {
            signed_content: content.clone(),
        },
        Event::MspSigned {
            signed_content: content,
        },
    ]
}

async fn contract_request(
    app: &TestApp,
    contractor: Uuid,
    start_date: NaiveDate,
    then: Vec<contract_request::Event>,
) -> Uuid {
    let id = Uuid::new_v4();
    let events = std::iter::once(contract_created(id, contractor, start_date))
        .chain(then)
        .collect();
    record::<ContractRequestAggregate>(app, id, events).await;
    id
}

async fn cr_row(app: &TestApp, id: Uuid) -> (String, NaiveDate, Value) {
    let rows = app
        .query(
            "SELECT status, end_date, data FROM contract_requests WHERE id = $1",
            &[&id],
        )
        .await;
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_requests_past_their_start_date_and_not_signed_are_terminated_auto_expired() {
    // `starts_today` is overdue once the worker's scheduler sees tomorrow, and `end_date` is its today.
    within_one_utc_day().await;
    let mut app = app_with_fast_scheduler().await;
    let clinic = app.msp().await.legal_entity_id;
    let yesterday = today() - days(1);
    let new = contract_request(&app, clinic, yesterday, vec![]).await;
    let in_process = contract_request(
        &app,
        clinic,
        today() - days(10),
        vec![contract_request::Event::Assigned {
            assignee_id: Uuid::new_v4(),
        }],
    )
    .await;
    let starts_today = contract_request(&app, clinic, today(), vec![]).await;
    let starts_later = contract_request(&app, clinic, today() + days(5), vec![]).await;
    let declined = contract_request(
        &app,
        clinic,
        yesterday,
        vec![contract_request::Event::Declined {
            status_reason: Some("no".to_owned()),
        }],
    )
    .await;
    let terminated = contract_request(
        &app,
        clinic,
        yesterday,
        vec![contract_request::Event::Terminated {
            status_reason: Some("by the contractor".to_owned()),
            end_date: yesterday,
        }],
    )
    .await;
    let signed_id = Uuid::new_v4();
    record::<ContractRequestAggregate>(
        &app,
        signed_id,
        std::iter::once(contract_created(signed_id, clinic, yesterday))
            .chain(signed(signed_id))
            .collect(),
    )
    .await;
    assert_eq!(cr_row(&app, signed_id).await.0, "SIGNED");
    app.start_worker();

    for id in [new, in_process] {
        let (status, end_date, data) = wait_for(WAIT, || async {
            let row = cr_row(&app, id).await;
            (row.0 == "TERMINATED").then_some(row)
        })
        .await
        .unwrap_or_else(|| panic!("{id} terminated"));
        assert_eq!(status, "TERMINATED");
        assert_eq!(end_date, today());
        assert_eq!(data["status_reason"], AUTO_EXPIRED, "{data}");
        let jobs = jobs_of(&app, id).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].0, "contract_request.terminate");
        assert_eq!(jobs[0].1, "processed");
        assert_eq!(jobs[0].2, serde_json::to_value(Actor::system()).unwrap());
        let client = app.pool.get().await.unwrap();
        let events = event_store::read_stream(&client, id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.event_type, "terminated");
        assert_eq!(last.data["status_reason"], AUTO_EXPIRED);
        assert_eq!(last.metadata["actor_user_id"], Uuid::nil().to_string());
    }
    for (id, status) in [
        (starts_today, "NEW"),
        (starts_later, "NEW"),
        (declined, "DECLINED"),
        (terminated, "TERMINATED"),
        (signed_id, "SIGNED"),
    ] {
        assert_eq!(jobs_of(&app, id).await, Vec::new(), "{id}");
        assert_eq!(cr_row(&app, id).await.0, status, "{id}");
    }
    assert_eq!(
        cr_row(&app, terminated).await.2["status_reason"],
        "by the contractor"
    );
}
