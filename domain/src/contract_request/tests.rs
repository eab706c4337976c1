//! Given/when/then tests of every contract-request transition and rejection.

#![allow(clippy::unwrap_used)]

use chrono::{Duration, NaiveDate};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::{
    reference::{DivisionFacts, EmployeeRecord, LegalEntityFacts, ReferenceFacts},
    testing::{given, test_actor, test_now},
    Actor, ClientType, Context,
};

type Cr = ContractRequestAggregate;

const ID: Uuid = Uuid::from_u128(0xc0);
const OWNER: Uuid = Uuid::from_u128(0x0e);
const DOCTOR: Uuid = Uuid::from_u128(0xd0);
const DIVISION: Uuid = Uuid::from_u128(0xd1);
const OTHER_DIVISION: Uuid = Uuid::from_u128(0xd2);
const NHS_LE: Uuid = Uuid::from_u128(0x4e);
const NHS_EMPLOYEE: Uuid = Uuid::from_u128(0x4f);
const OTHER_LE: Uuid = Uuid::from_u128(0xbbbb);
const EXTERNAL_DIVISION: Uuid = Uuid::from_u128(0xd3);
const STATUTE_MD5: &str = "0cc175b9c0f1b6a831c399e269772661";
const ADDITIONAL_MD5: &str = "92eb5ffee6ae2fec3ad71c777531578f";

fn today() -> NaiveDate {
    test_now().date_naive()
}

fn contractor() -> Uuid {
    test_actor().legal_entity_id
}

fn legal_entity(id: Uuid, name: &str, le_type: &str, status: &str) -> LegalEntityFacts {
    LegalEntityFacts {
        id,
        name: name.to_owned(),
        edrpou: "32323454".to_owned(),
        legal_entity_type: le_type.to_owned(),
        status: status.to_owned(),
        addresses: json!([{ "type": "RESIDENCE", "country": "UA", "settlement": "Київ" }]),
    }
}

fn employee(id: Uuid, legal_entity_id: Uuid, active: bool) -> EmployeeRecord {
    EmployeeRecord {
        id,
        legal_entity_id,
        party: json!({ "first_name": "Петро", "last_name": "Іванов", "second_name": "Миколайович" }),
        speciality: Some(json!({ "speciality": "THERAPIST", "level": "FIRST" })),
        employee_type: Some("DOCTOR".to_owned()),
        employee_status: Some("APPROVED".to_owned()),
        is_active: active,
    }
}

fn division(id: Uuid, legal_entity_id: Uuid, status: &str) -> DivisionFacts {
    DivisionFacts {
        id,
        legal_entity_id,
        name: "Бориспільське відділення".to_owned(),
        addresses: json!([]),
        phones: json!([{ "type": "MOBILE", "number": "+380503410870" }]),
        email: Some("email@example.com".to_owned()),
        working_hours: Some(json!({ "mon": [["08.00", "12.00"]] })),
        mountain_group: false,
        status: status.to_owned(),
    }
}

fn reference() -> ReferenceFacts {
    let mut r = ReferenceFacts::default();
    for le in [
        legal_entity(contractor(), "Клініка Ноунейм", "MSP", "ACTIVE"),
        legal_entity(NHS_LE, "НСЗУ", "NHS", "ACTIVE"),
        legal_entity(OTHER_LE, "Інша клініка", "MSP", "ACTIVE"),
    ] {
        r.legal_entities.insert(le.id, le);
    }
    for e in [
        employee(OWNER, contractor(), true),
        employee(DOCTOR, contractor(), true),
        employee(NHS_EMPLOYEE, NHS_LE, true),
    ] {
        r.employees.insert(e.id, e);
    }
    for d in [
        division(DIVISION, contractor(), "ACTIVE"),
        division(OTHER_DIVISION, OTHER_LE, "ACTIVE"),
        division(EXTERNAL_DIVISION, OTHER_LE, "ACTIVE"),
    ] {
        r.divisions.insert(d.id, d);
    }
    r
}

fn msp() -> Context {
    let mut ctx = Context::new(test_now(), test_actor());
    ctx.reference = reference();
    ctx
}

fn nhs() -> Context {
    let mut ctx = Context::new(
        test_now(),
        Actor {
            user_id: NHS_EMPLOYEE,
            legal_entity_id: NHS_LE,
            client_type: ClientType::Nhs,
        },
    );
    ctx.reference = reference();
    ctx
}

fn as_client(client_type: ClientType, legal_entity_id: Uuid) -> Context {
    let mut ctx = msp();
    ctx.actor.client_type = client_type;
    ctx.actor.legal_entity_id = legal_entity_id;
    ctx
}

fn request() -> CreateRequest {
    CreateRequest {
        contractor_owner_id: OWNER,
        contractor_base: "на підставі закону".to_owned(),
        contractor_payment_details: PaymentDetails {
            bank_name: "Банк номер 1".to_owned(),
            mfo: "351005".to_owned(),
            payer_account: "32009102701026".to_owned(),
        },
        contractor_rmsp_amount: Some(50000),
        contractor_divisions: vec![DIVISION],
        contractor_employee_divisions: vec![EmployeeDivisionInput {
            employee_id: DOCTOR,
            staff_units: 0.5,
            declaration_limit: 2000,
            division_id: DIVISION,
        }],
        external_contractor_flag: None,
        external_contractors: Vec::new(),
        id_form: "PMD_1".to_owned(),
        statute_md5: STATUTE_MD5.to_owned(),
        additional_document_md5: ADDITIONAL_MD5.to_owned(),
        start_date: today() + Duration::days(10),
        end_date: today() + Duration::days(375),
        previous_request_id: None,
        parent_contract_id: None,
        medical_program_id: None,
        nhs_signer_base: None,
        nhs_payment_method: None,
        issue_city: None,
    }
}

fn stored(key: String, etag: &str) -> Option<StoredDocument> {
    Some(StoredDocument {
        key,
        size: 1,
        etag: etag.to_owned(),
    })
}

fn create_with(request: CreateRequest) -> Command {
    Command::Create {
        id: ID,
        contract_type: ContractType::Capitation,
        request: Box::new(request),
        statute: stored(statute_key(ID), STATUTE_MD5),
        additional_document: stored(additional_document_key(ID), ADDITIONAL_MD5),
    }
}

fn create() -> Command {
    create_with(request())
}

fn created() -> Event {
    Cr::decide(&State::default(), create(), &msp())
        .unwrap()
        .remove(0)
}

fn assigned() -> Event {
    Event::Assigned {
        assignee_id: NHS_EMPLOYEE,
    }
}

fn approval() -> Approval {
    Approval {
        nhs_signer_id: NHS_EMPLOYEE,
        nhs_signer_base: "на підставі наказу".to_owned(),
        nhs_contract_price: 50000.0,
        nhs_payment_method: "BACKWARD".to_owned(),
        issue_city: "Київ".to_owned(),
    }
}

fn approved() -> Event {
    Cr::decide(
        &Cr::fold([created(), assigned()].iter()),
        Command::Approve(approval()),
        &nhs(),
    )
    .unwrap()
    .remove(0)
}

fn signed_object(n: u128) -> StoredDocument {
    StoredDocument {
        key: signed_content_key(ID, Uuid::from_u128(n)),
        size: 10,
        etag: "e".to_owned(),
    }
}

fn sign(n: u128) -> (String, Option<StoredDocument>) {
    (signed_object(n).key, Some(signed_object(n)))
}

fn sign_nhs() -> Command {
    let (content_key, stored) = sign(1);
    Command::SignNhs {
        content_key,
        signed_content: String::new(),
        stored,
    }
}

fn sign_msp() -> Command {
    let (content_key, stored) = sign(2);
    Command::SignMsp {
        content_key,
        signed_content: String::new(),
        stored,
    }
}

fn nhs_signed() -> Event {
    Event::NhsSigned {
        signed_content: signed_object(1),
    }
}

/// The history that reaches each status.
fn history(status: Status) -> Vec<Event> {
    let path = [
        created(),
        assigned(),
        approved(),
        Event::MspApproved,
        nhs_signed(),
        Event::MspSigned {
            signed_content: signed_object(2),
        },
    ];
    match status {
        Status::New => path[..1].to_vec(),
        Status::InProcess => path[..2].to_vec(),
        Status::Approved => path[..3].to_vec(),
        Status::PendingNhsSign => path[..4].to_vec(),
        Status::NhsSigned => path[..5].to_vec(),
        Status::Signed => path.to_vec(),
        Status::Declined => vec![
            created(),
            assigned(),
            Event::Declined {
                status_reason: None,
            },
        ],
        Status::Terminated => vec![
            created(),
            Event::Terminated {
                status_reason: None,
                end_date: today(),
            },
        ],
    }
}

// ---------------------------------------------------------------------------------------------------- create

#[test]
fn create_snapshots_the_reference_data_it_validated() {
    let events = given::<Cr>([]).with(msp()).when(create()).result().unwrap();
    let Event::Created(c) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(c.contractor_legal_entity.id, contractor());
    assert_eq!(c.contractor_legal_entity.name, "Клініка Ноунейм");
    assert_eq!(c.contractor_owner.id, OWNER);
    assert_eq!(c.contractor_owner.party["last_name"], "Іванов");
    assert_eq!(c.contractor_divisions[0].id, DIVISION);
    assert_eq!(
        c.contractor_divisions[0].phones[0]["number"],
        "+380503410870"
    );
    assert_eq!(c.contractor_employee_divisions[0].employee_id, DOCTOR);
    assert_eq!(
        c.contractor_employee_divisions[0].speciality,
        Some(json!({ "speciality": "THERAPIST", "level": "FIRST" }))
    );
    assert_eq!(c.statute.key, statute_key(ID));
    assert_eq!(c.created_by, test_actor().user_id);
    let state = Cr::fold(events.iter());
    assert_eq!(state.0.unwrap().status, Status::New);
}

#[test]
fn create_of_an_existing_request_is_409() {
    given::<Cr>([created()])
        .with(msp())
        .when(create())
        .then_rejected(409, ALREADY_EXISTS);
}

#[test]
fn create_by_a_client_type_that_is_no_contractor_of_the_type_is_403() {
    for client_type in [ClientType::Pharmacy, ClientType::Nhs, ClientType::Mis] {
        given::<Cr>([])
            .with(as_client(client_type, contractor()))
            .when(create())
            .then_rejected(403, NOT_ALLOWED);
    }
    let reimbursement = Command::Create {
        id: ID,
        contract_type: ContractType::Reimbursement,
        request: Box::new(request()),
        statute: stored(statute_key(ID), STATUTE_MD5),
        additional_document: stored(additional_document_key(ID), ADDITIONAL_MD5),
    };
    given::<Cr>([])
        .with(msp())
        .when(reimbursement)
        .then_rejected(403, NOT_ALLOWED);
}

#[test]
fn msp_pharmacy_and_primary_care_may_create_capitation() {
    for client_type in [ClientType::MspPharmacy, ClientType::PrimaryCare] {
        let events = given::<Cr>([])
            .with(as_client(client_type, contractor()))
            .when(create())
            .result();
        assert!(events.is_ok(), "{client_type:?}: {events:?}");
    }
}

#[test]
fn pharmacy_creates_reimbursement_with_its_medical_program() {
    let program = Uuid::from_u128(0x77);
    let command = Command::Create {
        id: ID,
        contract_type: ContractType::Reimbursement,
        request: Box::new(CreateRequest {
            contractor_rmsp_amount: None,
            contractor_employee_divisions: Vec::new(),
            medical_program_id: Some(program),
            ..request()
        }),
        statute: stored(statute_key(ID), STATUTE_MD5),
        additional_document: stored(additional_document_key(ID), ADDITIONAL_MD5),
    };
    let events = given::<Cr>([])
        .with(as_client(ClientType::Pharmacy, contractor()))
        .when(command)
        .result()
        .unwrap();
    let Event::Created(c) = &events[0] else {
        panic!()
    };
    assert_eq!(c.medical_programs, vec![program]);
    assert_eq!(c.contract_type, ContractType::Reimbursement);
}

#[test]
fn create_by_an_inactive_legal_entity_is_403() {
    let mut ctx = msp();
    ctx.reference
        .legal_entities
        .get_mut(&contractor())
        .unwrap()
        .status = "SUSPENDED".to_owned();
    given::<Cr>([])
        .with(ctx)
        .when(create())
        .then_rejected(403, CLIENT_NOT_ACTIVE);
}

#[test]
fn create_without_the_statute_uploaded_is_409() {
    let mut command = create();
    if let Command::Create { statute, .. } = &mut command {
        *statute = None;
    }
    given::<Cr>([])
        .with(msp())
        .when(command)
        .then_rejected(409, STATUTE_NOT_UPLOADED);
}

#[test]
fn create_without_the_additional_document_uploaded_is_409() {
    let mut command = create();
    if let Command::Create {
        additional_document,
        ..
    } = &mut command
    {
        *additional_document = None;
    }
    given::<Cr>([])
        .with(msp())
        .when(command)
        .then_rejected(409, ADDITIONAL_DOCUMENT_NOT_UPLOADED);
}

#[test]
fn create_with_a_statute_of_another_md5_is_409() {
    let command = create_with(CreateRequest {
        statute_md5: "ffffffffffffffffffffffffffffffff".to_owned(),
        ..request()
    });
    given::<Cr>([])
        .with(msp())
        .when(command)
        .then_rejected(409, STATUTE_MD5_MISMATCH);
}

#[test]
fn create_with_an_additional_document_of_another_md5_is_409() {
    let command = create_with(CreateRequest {
        additional_document_md5: STATUTE_MD5.to_owned(),
        ..request()
    });
    given::<Cr>([])
        .with(msp())
        .when(command)
        .then_rejected(409, ADDITIONAL_DOCUMENT_MD5_MISMATCH);
}

#[test]
fn md5_is_compared_case_insensitively() {
    let command = create_with(CreateRequest {
        statute_md5: STATUTE_MD5.to_uppercase(),
        ..request()
    });
    assert!(given::<Cr>([]).with(msp()).when(command).result().is_ok());
}

#[test]
fn an_owner_who_is_unknown_inactive_or_of_another_legal_entity_is_422() {
    let mut inactive = msp();
    inactive
        .reference
        .employees
        .get_mut(&OWNER)
        .unwrap()
        .is_active = false;
    given::<Cr>([])
        .with(inactive)
        .when(create())
        .then_invalid("$.contractor_owner_id");
    for owner in [Uuid::from_u128(0x404), NHS_EMPLOYEE] {
        given::<Cr>([])
            .with(msp())
            .when(create_with(CreateRequest {
                contractor_owner_id: owner,
                ..request()
            }))
            .then_invalid("$.contractor_owner_id");
    }
}

#[test]
fn a_division_of_another_legal_entity_unknown_or_inactive_is_422_naming_it() {
    for division_id in [OTHER_DIVISION, Uuid::from_u128(0x404)] {
        given::<Cr>([])
            .with(msp())
            .when(create_with(CreateRequest {
                contractor_divisions: vec![DIVISION, division_id],
                ..request()
            }))
            .then_invalid("$.contractor_divisions[1]");
    }
    let mut ctx = msp();
    ctx.reference.divisions.get_mut(&DIVISION).unwrap().status = "INACTIVE".to_owned();
    given::<Cr>([])
        .with(ctx)
        .when(create())
        .then_invalid("$.contractor_divisions[0]");
    given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            contractor_divisions: vec![DIVISION, DIVISION],
            ..request()
        }))
        .then_invalid("$.contractor_divisions[1]");
}

#[test]
fn an_employee_of_another_legal_entity_or_in_a_division_not_listed_is_422() {
    let mut r = request();
    r.contractor_employee_divisions[0].employee_id = NHS_EMPLOYEE;
    given::<Cr>([])
        .with(msp())
        .when(create_with(r))
        .then_invalid("$.contractor_employee_divisions[0].employee_id");
    let mut r = request();
    r.contractor_employee_divisions[0].division_id = OTHER_DIVISION;
    given::<Cr>([])
        .with(msp())
        .when(create_with(r))
        .then_invalid("$.contractor_employee_divisions[0].division_id");
}

#[test]
fn dates_out_of_order_or_in_the_past_are_422() {
    given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            end_date: today(),
            ..request()
        }))
        .then_invalid("$.end_date");
    given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            start_date: today() - Duration::days(1),
            ..request()
        }))
        .then_invalid("$.start_date");
}

#[test]
fn external_contractors_are_required_by_the_flag_and_snapshotted_with_names() {
    given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            external_contractor_flag: Some(true),
            ..request()
        }))
        .then_invalid("$.external_contractors");
    let external = ExternalContractorInput {
        legal_entity_id: OTHER_LE,
        contract: ExternalContract {
            number: "1234567".to_owned(),
            issued_at: today(),
            expires_at: today() + Duration::days(365),
        },
        divisions: vec![ExternalDivisionInput {
            id: EXTERNAL_DIVISION,
            medical_service: "Послуга ПМД".to_owned(),
        }],
    };
    let events = given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            external_contractor_flag: Some(true),
            external_contractors: vec![external.clone()],
            ..request()
        }))
        .result()
        .unwrap();
    let Event::Created(c) = &events[0] else {
        panic!()
    };
    assert_eq!(c.external_contractors[0].legal_entity_name, "Інша клініка");
    assert_eq!(
        c.external_contractors[0].divisions[0].name,
        "Бориспільське відділення"
    );
    let mut wrong_division = external.clone();
    wrong_division.divisions[0].id = DIVISION;
    given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            external_contractor_flag: Some(true),
            external_contractors: vec![wrong_division],
            ..request()
        }))
        .then_invalid("$.external_contractors[0].divisions[0].id");
    let mut unknown = external;
    unknown.legal_entity_id = Uuid::from_u128(0x404);
    given::<Cr>([])
        .with(msp())
        .when(create_with(CreateRequest {
            external_contractors: vec![unknown],
            ..request()
        }))
        .then_invalid("$.external_contractors[0].legal_entity_id");
}

// ----------------------------------------------------------------------------------------------- transitions

#[test]
fn an_action_on_an_unknown_request_is_404() {
    given::<Cr>([])
        .with(nhs())
        .when(Command::Assign {
            employee_id: NHS_EMPLOYEE,
        })
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn nhs_assigns_a_new_or_in_process_request_to_its_employee() {
    for status in [Status::New, Status::InProcess] {
        given::<Cr>(history(status))
            .with(nhs())
            .when(Command::Assign {
                employee_id: NHS_EMPLOYEE,
            })
            .then([assigned()]);
    }
    let state = Cr::fold(history(Status::InProcess).iter()).0.unwrap();
    assert_eq!(
        (state.status, state.assignee_id),
        (Status::InProcess, Some(NHS_EMPLOYEE))
    );
}

#[test]
fn assign_to_someone_who_is_not_an_active_nhs_employee_is_422() {
    given::<Cr>(history(Status::New))
        .with(nhs())
        .when(Command::Assign { employee_id: OWNER })
        .then_invalid("$.employee_id");
}

#[test]
fn approve_sets_the_contract_number_and_nhs_terms() {
    let Event::Approved(a) = approved() else {
        panic!()
    };
    assert_eq!(a.contract_number, contract_number(ID));
    assert_eq!(a.nhs_legal_entity.id, NHS_LE);
    assert_eq!(a.nhs_signer.id, NHS_EMPLOYEE);
    let state = Cr::fold(history(Status::Approved).iter()).0.unwrap();
    assert_eq!(state.status, Status::Approved);
    assert_eq!(state.contract_number, Some(contract_number(ID)));
    assert_eq!(state.nhs_contract_price, Some(50000.0));
}

#[test]
fn contract_numbers_look_like_the_documents() {
    let number = contract_number(Uuid::from_u128(u128::MAX));
    assert_eq!(number.len(), 19);
    assert!(number.split('-').all(|g| g.len() == 4
        && g.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())));
    assert_ne!(number, contract_number(ID));
}

#[test]
fn approve_with_a_signer_who_is_not_an_nhs_employee_or_a_negative_price_is_422() {
    given::<Cr>(history(Status::InProcess))
        .with(nhs())
        .when(Command::Approve(Approval {
            nhs_signer_id: DOCTOR,
            ..approval()
        }))
        .then_invalid("$.nhs_signer_id");
    given::<Cr>(history(Status::InProcess))
        .with(nhs())
        .when(Command::Approve(Approval {
            nhs_contract_price: -1.0,
            ..approval()
        }))
        .then_invalid("$.nhs_contract_price");
}

#[test]
fn decline_of_an_in_process_request_records_the_reason() {
    let reason = Some("Не відповідає попереднім домовленостям".to_owned());
    given::<Cr>(history(Status::InProcess))
        .with(nhs())
        .when(Command::Decline {
            status_reason: reason.clone(),
        })
        .then([Event::Declined {
            status_reason: reason,
        }]);
}

#[test]
fn the_contractor_approves_an_approved_request() {
    given::<Cr>(history(Status::Approved))
        .with(msp())
        .when(Command::ApproveMsp)
        .then([Event::MspApproved]);
}

#[test]
fn nhs_signs_a_request_pending_its_signature_with_the_stored_content() {
    given::<Cr>(history(Status::PendingNhsSign))
        .with(nhs())
        .when(sign_nhs())
        .then([nhs_signed()]);
}

#[test]
fn a_sign_whose_content_was_not_stored_is_409() {
    given::<Cr>(history(Status::PendingNhsSign))
        .with(nhs())
        .when(Command::SignNhs {
            content_key: signed_object(1).key,
            signed_content: String::new(),
            stored: None,
        })
        .then_rejected(409, SIGNED_CONTENT_NOT_STORED);
}

#[test]
fn the_contractor_signs_an_nhs_signed_request() {
    given::<Cr>(history(Status::NhsSigned))
        .with(msp())
        .when(sign_msp())
        .then([Event::MspSigned {
            signed_content: signed_object(2),
        }]);
    let state = Cr::fold(history(Status::Signed).iter()).0.unwrap();
    assert_eq!(state.status, Status::Signed);
    assert_eq!(state.signed_content, Some(signed_object(2)));
}

#[test]
fn terminate_sets_end_date_to_today_from_every_open_status() {
    for status in [
        Status::New,
        Status::InProcess,
        Status::Approved,
        Status::PendingNhsSign,
        Status::NhsSigned,
    ] {
        for ctx in [nhs(), msp()] {
            given::<Cr>(history(status))
                .with(ctx)
                .when(Command::Terminate {
                    status_reason: Some("why".to_owned()),
                })
                .then([Event::Terminated {
                    status_reason: Some("why".to_owned()),
                    end_date: today(),
                }]);
        }
    }
    let state = Cr::fold(history(Status::Terminated).iter()).0.unwrap();
    assert_eq!(
        (state.status, state.end_date),
        (Status::Terminated, today())
    );
}

#[test]
fn the_system_actor_terminates_as_nhs() {
    given::<Cr>(history(Status::New))
        .with_ctx(|ctx| ctx.actor = Actor::system())
        .when(Command::Terminate {
            status_reason: Some("AUTO_EXPIRED".to_owned()),
        })
        .then([Event::Terminated {
            status_reason: Some("AUTO_EXPIRED".to_owned()),
            end_date: today(),
        }]);
}

#[test]
fn terminate_of_a_declined_signed_or_terminated_request_is_409() {
    for status in [Status::Declined, Status::Signed, Status::Terminated] {
        given::<Cr>(history(status))
            .with(nhs())
            .when(Command::Terminate {
                status_reason: None,
            })
            .then_rejected(409, INCORRECT_STATUS);
    }
}

/// Every command in every status it is not allowed in: 409 "Incorrect status…", decided by the right party.
#[test]
fn every_action_in_a_wrong_status_is_409() {
    let cases: Vec<(Command, Context, Vec<Status>)> = vec![
        (
            Command::Assign {
                employee_id: NHS_EMPLOYEE,
            },
            nhs(),
            vec![Status::New, Status::InProcess],
        ),
        (Command::Approve(approval()), nhs(), vec![Status::InProcess]),
        (
            Command::Decline {
                status_reason: None,
            },
            nhs(),
            vec![Status::InProcess],
        ),
        (Command::ApproveMsp, msp(), vec![Status::Approved]),
        (sign_nhs(), nhs(), vec![Status::PendingNhsSign]),
        (sign_msp(), msp(), vec![Status::NhsSigned]),
    ];
    for (command, ctx, allowed) in cases {
        for status in Status::ALL.into_iter().filter(|s| !allowed.contains(s)) {
            given::<Cr>(history(status))
                .with(ctx.clone())
                .when(command.clone())
                .then_rejected(409, INCORRECT_STATUS);
        }
    }
}

/// NHS's actions by the contractor, the contractor's by NHS or another clinic: 403, before the status.
#[test]
fn every_action_by_the_wrong_party_is_403() {
    let other_clinic = as_client(ClientType::Msp, OTHER_LE);
    let pharmacy = as_client(ClientType::Pharmacy, contractor());
    let cases: Vec<(Command, Vec<Context>)> = vec![
        (
            Command::Assign {
                employee_id: NHS_EMPLOYEE,
            },
            vec![msp(), other_clinic.clone()],
        ),
        (Command::Approve(approval()), vec![msp()]),
        (
            Command::Decline {
                status_reason: None,
            },
            vec![msp()],
        ),
        (
            Command::ApproveMsp,
            vec![nhs(), other_clinic.clone(), pharmacy.clone()],
        ),
        (sign_nhs(), vec![msp()]),
        (sign_msp(), vec![nhs(), other_clinic.clone()]),
        (
            Command::Terminate {
                status_reason: None,
            },
            vec![
                other_clinic,
                pharmacy,
                as_client(ClientType::Mis, contractor()),
            ],
        ),
    ];
    for (command, contexts) in cases {
        for ctx in contexts {
            given::<Cr>(history(Status::New))
                .with(ctx)
                .when(command.clone())
                .then_rejected(403, NOT_ALLOWED);
        }
    }
}

#[test]
fn commands_round_trip_through_json_tagged_by_action() {
    let commands = [
        create(),
        Command::Assign {
            employee_id: NHS_EMPLOYEE,
        },
        Command::Approve(approval()),
        Command::Decline {
            status_reason: None,
        },
        Command::ApproveMsp,
        sign_nhs(),
        sign_msp(),
        Command::Terminate {
            status_reason: Some("AUTO_EXPIRED".to_owned()),
        },
    ];
    for command in commands {
        let json = serde_json::to_value(&command).unwrap();
        assert_eq!(json["action"], command.name());
        let back: Command = serde_json::from_value(json).unwrap();
        assert_eq!(back, command);
    }
    let terminate: Command =
        serde_json::from_value(json!({ "action": "terminate", "status_reason": "AUTO_EXPIRED" }))
            .unwrap();
    assert_eq!(terminate.name(), "terminate");
}

#[test]
fn events_round_trip_through_json_with_their_event_type() {
    for event in history(Status::Signed) {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], event.event_type());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn contract_types_parse_from_paths_in_either_case_only() {
    assert_eq!(
        ContractType::from_path("capitation"),
        Some(ContractType::Capitation)
    );
    assert_eq!(
        ContractType::from_path("REIMBURSEMENT"),
        Some(ContractType::Reimbursement)
    );
    assert_eq!(ContractType::from_path("Capitation"), None);
    assert_eq!(ContractType::from_path("other"), None);
}
