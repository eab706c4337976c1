//! Given/when/then tests of every service-request transition and rejection.

#![allow(clippy::unwrap_used)]

use chrono::{Duration, NaiveDate};
use uuid::Uuid;

use super::*;
use crate::{
    context::EmployeeFacts,
    testing::{given, test_actor, test_now},
    Actor, ClientType,
};

type Sr = ServiceRequestAggregate;

const ID: Uuid = Uuid::from_u128(0x5e);
const PATIENT: Uuid = Uuid::from_u128(0x9a);
const PROGRAM: Uuid = Uuid::from_u128(0x70);
const DOCTOR: Uuid = Uuid::from_u128(0xd0);

fn today() -> NaiveDate {
    test_now().date_naive()
}

fn created_with(program_id: Option<Uuid>, expiration_date: Option<NaiveDate>) -> Event {
    Event::Created {
        id: ID,
        patient_id: PATIENT,
        category: "laboratory_procedure".to_owned(),
        code: "LAB-001".to_owned(),
        program_id,
        expiration_date,
        requester_legal_entity_id: test_actor().legal_entity_id,
        requester_user_id: test_actor().user_id,
        program_processing_status: program_id.map(|_| ProgramProcessingStatus::New),
    }
}

fn created() -> Event {
    created_with(None, None)
}

fn created_with_program() -> Event {
    created_with(Some(PROGRAM), None)
}

fn used() -> Event {
    Event::Used {
        used_by_legal_entity_id: test_actor().legal_entity_id,
        used_by_employee_id: None,
        program_processing_status: Some(ProgramProcessingStatus::InQueue),
    }
}

fn used_without_program() -> Event {
    Event::Used {
        used_by_legal_entity_id: test_actor().legal_entity_id,
        used_by_employee_id: None,
        program_processing_status: None,
    }
}

fn create_command(expiration_date: Option<NaiveDate>) -> Command {
    Command::Create {
        id: ID,
        patient_id: PATIENT,
        category: "laboratory_procedure".to_owned(),
        code: "LAB-001".to_owned(),
        program_id: Some(PROGRAM),
        expiration_date,
    }
}

fn use_by_me(employee: Option<Uuid>) -> Command {
    Command::Use {
        used_by_legal_entity_id: test_actor().legal_entity_id,
        used_by_employee_id: employee,
    }
}

fn doctor() -> EmployeeFacts {
    EmployeeFacts {
        id: DOCTOR,
        legal_entity_id: test_actor().legal_entity_id,
        employee_type: Some("DOCTOR".to_owned()),
        employee_status: Some("APPROVED".to_owned()),
        is_active: true,
    }
}

fn other_legal_entity() -> Actor {
    Actor {
        user_id: Uuid::from_u128(0x2222),
        legal_entity_id: Uuid::from_u128(0xBBBB),
        client_type: ClientType::Msp,
    }
}

fn recall() -> Command {
    Command::Recall {
        patient_id: PATIENT,
        reason: Some("duplicate".to_owned()),
    }
}

fn cancel() -> Command {
    Command::Cancel {
        patient_id: PATIENT,
        reason: None,
    }
}

// create ---------------------------------------------------------------------------------------------------

#[test]
fn create_makes_an_active_request_new_in_its_program() {
    given::<Sr>([])
        .when(create_command(Some(today())))
        .then([created_with(Some(PROGRAM), Some(today()))]);
}

#[test]
fn create_without_a_program_has_no_program_processing_status() {
    let command = Command::Create {
        id: ID,
        patient_id: PATIENT,
        category: "laboratory_procedure".to_owned(),
        code: "LAB-001".to_owned(),
        program_id: None,
        expiration_date: None,
    };
    given::<Sr>([]).when(command).then([created()]);
}

#[test]
fn create_of_an_existing_request_is_409() {
    given::<Sr>([created()])
        .when(create_command(None))
        .then_rejected(409, ALREADY_EXISTS);
}

#[test]
fn create_with_a_past_expiration_date_is_422() {
    given::<Sr>([])
        .when(create_command(Some(today() - Duration::days(1))))
        .then_invalid("$.expiration_date");
}

#[test]
fn create_with_a_blank_category_or_code_is_422() {
    let blank = |category: &str, code: &str| Command::Create {
        id: ID,
        patient_id: PATIENT,
        category: category.to_owned(),
        code: code.to_owned(),
        program_id: None,
        expiration_date: None,
    };
    given::<Sr>([])
        .when(blank(" ", "x"))
        .then_invalid("$.category");
    given::<Sr>([]).when(blank("c", "")).then_invalid("$.code");
}

// use ------------------------------------------------------------------------------------------------------

#[test]
fn use_of_a_request_with_a_program_puts_it_in_queue() {
    given::<Sr>([created_with_program()])
        .when(use_by_me(None))
        .then([used()]);
}

#[test]
fn use_of_a_request_without_a_program_leaves_it_without_program_status() {
    given::<Sr>([created()])
        .when(use_by_me(None))
        .then([used_without_program()]);
}

#[test]
fn use_with_an_approved_doctor_records_the_doctor() {
    given::<Sr>([created_with_program()])
        .with_ctx(|ctx| ctx.employee = Some(doctor()))
        .when(use_by_me(Some(DOCTOR)))
        .then([Event::Used {
            used_by_legal_entity_id: test_actor().legal_entity_id,
            used_by_employee_id: Some(DOCTOR),
            program_processing_status: Some(ProgramProcessingStatus::InQueue),
        }]);
}

#[test]
fn use_of_a_request_that_is_not_active_is_409() {
    given::<Sr>([created(), Event::Recalled { reason: None }])
        .when(use_by_me(None))
        .then_rejected(409, INVALID_STATUS);
}

#[test]
fn use_of_an_expired_request_is_409() {
    given::<Sr>([created_with(None, Some(today() - Duration::days(1)))])
        .when(use_by_me(None))
        .then_rejected(409, EXPIRED);
}

#[test]
fn use_on_its_expiration_date_is_allowed() {
    given::<Sr>([created_with(None, Some(today()))])
        .when(use_by_me(None))
        .then([used_without_program()]);
}

#[test]
fn use_of_a_used_request_is_409() {
    given::<Sr>([created_with_program(), used()])
        .when(use_by_me(None))
        .then_rejected(409, ALREADY_USED);
}

#[test]
fn use_for_another_legal_entity_is_422() {
    let command = Command::Use {
        used_by_legal_entity_id: Uuid::from_u128(0xBBBB),
        used_by_employee_id: None,
    };
    given::<Sr>([created()])
        .when(command)
        .then_invalid("$.used_by_legal_entity.identifier.value");
}

#[test]
fn use_with_an_unknown_employee_is_422() {
    given::<Sr>([created()])
        .when(use_by_me(Some(DOCTOR)))
        .then_invalid("$.used_by_employee.identifier.value");
}

#[test]
fn use_with_an_employee_of_another_legal_entity_is_422() {
    let employee = EmployeeFacts {
        legal_entity_id: Uuid::from_u128(0xBBBB),
        ..doctor()
    };
    given::<Sr>([created()])
        .with_ctx(|ctx| ctx.employee = Some(employee))
        .when(use_by_me(Some(DOCTOR)))
        .then_invalid("$.used_by_employee.identifier.value");
}

#[test]
fn use_with_an_employee_who_is_not_an_active_approved_doctor_is_422() {
    for employee in [
        EmployeeFacts {
            employee_type: Some("NURSE".to_owned()),
            ..doctor()
        },
        EmployeeFacts {
            employee_status: Some("DISMISSED".to_owned()),
            ..doctor()
        },
        EmployeeFacts {
            is_active: false,
            ..doctor()
        },
    ] {
        let result = given::<Sr>([created()])
            .with_ctx(|ctx| ctx.employee = Some(employee))
            .when(use_by_me(Some(DOCTOR)))
            .result();
        let rejection = result.expect_err("must be rejected");
        assert_eq!(rejection.status, 422);
        assert_eq!(
            rejection.invalid[0].rules[0].description,
            "employee must be an active approved doctor"
        );
    }
}

// release (spec 004) -------------------------------------------------------------------------------------

#[test]
fn release_of_an_active_request_in_queue_releases_it() {
    given::<Sr>([created_with_program(), used()])
        .when(Command::Release)
        .then([Event::Released]);
}

#[test]
fn release_of_a_request_not_in_queue_is_409_invalid_program_processing_status() {
    given::<Sr>([created_with_program()])
        .when(Command::Release)
        .then_rejected(409, INVALID_PROGRAM_PROCESSING_STATUS);
    given::<Sr>([created(), used_without_program()])
        .when(Command::Release)
        .then_rejected(409, INVALID_PROGRAM_PROCESSING_STATUS);
}

#[test]
fn release_of_a_request_that_is_not_active_is_409_invalid_status() {
    let in_progress = [created_with_program(), used(), Event::ProcessingStarted];
    given::<Sr>(in_progress)
        .when(Command::Release)
        .then_rejected(409, INVALID_STATUS);
    given::<Sr>([
        created_with_program(),
        used(),
        Event::Recalled { reason: None },
    ])
    .when(Command::Release)
    .then_rejected(409, INVALID_STATUS);
    given::<Sr>([
        created_with_program(),
        used(),
        Event::Cancelled { reason: None },
    ])
    .when(Command::Release)
    .then_rejected(409, INVALID_STATUS);
}

fn acting_for(legal_entity_id: Uuid) -> Actor {
    Actor {
        legal_entity_id,
        user_id: Uuid::from_u128(0x0123),
        ..test_actor()
    }
}

const HOLDER: Uuid = Uuid::from_u128(0x401d);
const STRANGER: Uuid = Uuid::from_u128(0x5757);

fn used_by_holder() -> Event {
    Event::Used {
        used_by_legal_entity_id: HOLDER,
        used_by_employee_id: None,
        program_processing_status: Some(ProgramProcessingStatus::InQueue),
    }
}

#[test]
fn release_by_the_legal_entity_holding_the_reservation_releases_it() {
    given::<Sr>([created_with_program(), used_by_holder()])
        .with_ctx(|ctx| ctx.actor = acting_for(HOLDER))
        .when(Command::Release)
        .then([Event::Released]);
}

#[test]
fn release_by_the_legal_entity_that_created_the_request_releases_it() {
    given::<Sr>([created_with_program(), used_by_holder()])
        .when(Command::Release)
        .then([Event::Released]);
}

#[test]
fn release_by_any_other_legal_entity_is_409_action_not_allowed() {
    given::<Sr>([created_with_program(), used_by_holder()])
        .with_ctx(|ctx| ctx.actor = acting_for(STRANGER))
        .when(Command::Release)
        .then_rejected(409, ACTION_NOT_ALLOWED);
    // Before the state is looked at: a stranger learns nothing of it.
    given::<Sr>([created_with_program()])
        .with_ctx(|ctx| ctx.actor = acting_for(STRANGER))
        .when(Command::Release)
        .then_rejected(409, ACTION_NOT_ALLOWED);
}

#[test]
fn release_of_an_unknown_request_is_404() {
    given::<Sr>([])
        .when(Command::Release)
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn released_requests_can_be_used_again() {
    given::<Sr>([created_with_program(), used(), Event::Released])
        .when(use_by_me(None))
        .then([used()]);
}

// process and complete -----------------------------------------------------------------------------------

#[test]
fn process_of_a_used_request_starts_it() {
    given::<Sr>([created_with_program(), used()])
        .when(Command::Process)
        .then([Event::ProcessingStarted]);
    given::<Sr>([created(), used_without_program()])
        .when(Command::Process)
        .then([Event::ProcessingStarted]);
}

#[test]
fn process_of_a_request_nobody_uses_is_409() {
    given::<Sr>([created()])
        .when(Command::Process)
        .then_rejected(409, NOT_USED);
}

#[test]
fn process_of_a_request_that_is_not_active_is_409() {
    given::<Sr>([created_with_program(), used(), Event::ProcessingStarted])
        .when(Command::Process)
        .then_rejected(409, INVALID_STATUS);
}

#[test]
fn process_by_another_legal_entity_than_the_user_is_403() {
    given::<Sr>([created_with_program(), used()])
        .with_ctx(|ctx| ctx.actor = other_legal_entity())
        .when(Command::Process)
        .then_rejected(403, NOT_ALLOWED_TO_MODIFY);
}

#[test]
fn process_of_an_unknown_request_is_404() {
    given::<Sr>([])
        .when(Command::Process)
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn complete_of_a_request_in_progress_completes_it() {
    given::<Sr>([created_with_program(), used(), Event::ProcessingStarted])
        .when(Command::Complete)
        .then([Event::Completed]);
}

#[test]
fn complete_of_a_request_not_in_progress_is_409() {
    given::<Sr>([created_with_program(), used()])
        .when(Command::Complete)
        .then_rejected(409, INVALID_STATUS);
}

#[test]
fn complete_by_another_legal_entity_is_403() {
    given::<Sr>([created_with_program(), used(), Event::ProcessingStarted])
        .with_ctx(|ctx| ctx.actor = other_legal_entity())
        .when(Command::Complete)
        .then_rejected(403, NOT_ALLOWED_TO_MODIFY);
}

#[test]
fn complete_of_an_unknown_request_is_404() {
    given::<Sr>([])
        .when(Command::Complete)
        .then_rejected(404, NOT_FOUND);
}

// recall and cancel --------------------------------------------------------------------------------------

#[test]
fn recall_by_the_requester_recalls_it_with_the_reason() {
    given::<Sr>([created()])
        .when(recall())
        .then([Event::Recalled {
            reason: Some("duplicate".to_owned()),
        }]);
}

#[test]
fn cancel_by_the_requester_marks_it_entered_in_error() {
    given::<Sr>([created_with_program(), used()])
        .when(cancel())
        .then([Event::Cancelled { reason: None }]);
}

#[test]
fn recall_and_cancel_of_another_patients_request_are_404() {
    let other = Uuid::from_u128(0xFF);
    given::<Sr>([created()])
        .when(Command::Recall {
            patient_id: other,
            reason: None,
        })
        .then_rejected(404, NOT_FOUND);
    given::<Sr>([created()])
        .when(Command::Cancel {
            patient_id: other,
            reason: None,
        })
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn recall_and_cancel_by_another_legal_entity_are_403() {
    for command in [recall(), cancel()] {
        given::<Sr>([created()])
            .with_ctx(|ctx| ctx.actor = other_legal_entity())
            .when(command)
            .then_rejected(403, NOT_ALLOWED_TO_MODIFY);
    }
}

#[test]
fn recall_and_cancel_of_a_request_that_is_not_active_are_409() {
    for command in [recall(), cancel()] {
        given::<Sr>([created(), Event::Recalled { reason: None }])
            .when(command)
            .then_rejected(409, INVALID_STATUS);
    }
}

#[test]
fn recall_and_cancel_of_an_unknown_request_are_404() {
    for command in [recall(), cancel()] {
        given::<Sr>([]).when(command).then_rejected(404, NOT_FOUND);
    }
}

// expire (the scheduler's recall) -------------------------------------------------------------------------

fn system() -> Actor {
    Actor::system()
}

fn yesterday() -> NaiveDate {
    today() - Duration::days(1)
}

#[test]
fn expire_by_the_system_recalls_an_active_request_past_its_expiration_date_as_autoexpired() {
    for history in [
        vec![created_with(None, Some(yesterday()))],
        vec![created_with(Some(PROGRAM), Some(yesterday())), used()],
    ] {
        given::<Sr>(history)
            .with_ctx(|ctx| ctx.actor = system())
            .when(Command::Expire)
            .then([Event::Recalled {
                reason: Some(AUTOEXPIRED.to_owned()),
            }]);
    }
}

#[test]
fn an_expired_request_folds_to_recalled_with_the_autoexpired_reason() {
    let state = Sr::fold(&[
        created_with(None, Some(yesterday())),
        Event::Recalled {
            reason: Some(AUTOEXPIRED.to_owned()),
        },
    ]);
    let sr = state.0.unwrap();
    assert_eq!(
        (sr.status, sr.status_reason.as_deref()),
        (Status::Recalled, Some("autoexpired"))
    );
}

#[test]
fn expire_on_or_before_the_expiration_date_or_without_one_is_409() {
    for expiration_date in [Some(today()), Some(today() + Duration::days(3)), None] {
        given::<Sr>([created_with(None, expiration_date)])
            .with_ctx(|ctx| ctx.actor = system())
            .when(Command::Expire)
            .then_rejected(409, NOT_EXPIRED);
    }
}

#[test]
fn expire_of_a_request_that_is_no_longer_active_is_409() {
    for ended in [
        Event::Recalled { reason: None },
        Event::Cancelled { reason: None },
        Event::ProcessingStarted,
    ] {
        given::<Sr>([created_with(None, Some(yesterday())), ended])
            .with_ctx(|ctx| ctx.actor = system())
            .when(Command::Expire)
            .then_rejected(409, INVALID_STATUS);
    }
}

#[test]
fn expire_by_anyone_but_the_system_is_403_even_by_the_requester_or_nhs() {
    let nhs = Actor {
        client_type: ClientType::Nhs,
        ..test_actor()
    };
    for actor in [test_actor(), nhs, other_legal_entity()] {
        given::<Sr>([created_with(None, Some(yesterday()))])
            .with_ctx(|ctx| ctx.actor = actor)
            .when(Command::Expire)
            .then_rejected(403, NOT_ALLOWED_TO_MODIFY);
    }
}

#[test]
fn expire_of_an_unknown_request_is_404() {
    given::<Sr>([])
        .with_ctx(|ctx| ctx.actor = system())
        .when(Command::Expire)
        .then_rejected(404, NOT_FOUND);
}

// apply ----------------------------------------------------------------------------------------------------

#[test]
fn applying_created_used_released_clears_the_users_and_sets_new() {
    let state = Sr::fold(&[created_with_program(), used(), Event::Released]);
    let sr = state.0.unwrap();
    assert_eq!(sr.status, Status::Active);
    assert_eq!(sr.used_by_legal_entity_id, None);
    assert_eq!(sr.used_by_employee_id, None);
    assert_eq!(
        sr.program_processing_status,
        Some(ProgramProcessingStatus::New)
    );
}

#[test]
fn applying_the_whole_lifecycle_ends_completed() {
    let sr = Sr::fold(&[
        created_with_program(),
        used(),
        Event::ProcessingStarted,
        Event::Completed,
    ])
    .0
    .unwrap();
    assert_eq!(sr.status, Status::Completed);
    assert_eq!(
        sr.program_processing_status,
        Some(ProgramProcessingStatus::Completed)
    );
    let sr = Sr::fold(&[created(), used_without_program(), Event::ProcessingStarted])
        .0
        .unwrap();
    assert_eq!(
        (sr.status, sr.program_processing_status),
        (Status::InProgress, None)
    );
}

#[test]
fn applying_recalled_and_cancelled_sets_status_and_reason() {
    let sr = Sr::fold(&[
        created(),
        Event::Recalled {
            reason: Some("why".to_owned()),
        },
    ])
    .0
    .unwrap();
    assert_eq!(
        (sr.status, sr.status_reason.as_deref()),
        (Status::Recalled, Some("why"))
    );
    let sr = Sr::fold(&[created(), Event::Cancelled { reason: None }])
        .0
        .unwrap();
    assert_eq!(sr.status, Status::EnteredInError);
}

#[test]
fn events_before_creation_leave_the_state_empty() {
    assert_eq!(Sr::fold(&[Event::Released]), State(None));
}

// serialization --------------------------------------------------------------------------------------------

#[test]
fn every_event_round_trips_through_json_with_its_event_type() {
    let events = [
        created_with_program(),
        used(),
        Event::Released,
        Event::ProcessingStarted,
        Event::Completed,
        Event::Recalled {
            reason: Some("r".to_owned()),
        },
        Event::Cancelled { reason: None },
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], event.event_type());
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }
}

#[test]
fn every_command_round_trips_through_json() {
    let commands = [
        create_command(None),
        use_by_me(Some(DOCTOR)),
        Command::Release,
        Command::Process,
        Command::Complete,
        recall(),
        Command::Expire,
        cancel(),
    ];
    for command in commands {
        let json = serde_json::to_value(&command).unwrap();
        assert_eq!(json["action"], command.name());
        assert_eq!(serde_json::from_value::<Command>(json).unwrap(), command);
    }
}
