//! Given/when/then tests of every patient-attachment transition and rejection.

#![allow(clippy::unwrap_used)]

use uuid::Uuid;

use super::*;
use crate::{
    testing::{given, test_actor, test_now},
    Actor, ClientType,
};

type Attachments = PatientAttachmentAggregate;

const ID: i64 = 42;
const PATIENT: i64 = 7;
const MAX: u64 = 1000;

fn key() -> String {
    upload_key(
        test_actor().legal_entity_id,
        PATIENT,
        Uuid::from_u128(0xbeef),
        "scan.pdf",
    )
}

fn create(upload: Option<Upload>) -> Command {
    Command::Create {
        id: ID,
        patient_id: PATIENT,
        patient_case_id: Some(9),
        description: Some("Referral letter".to_owned()),
        upload_key: key(),
        user_number: 3,
        max_bytes: MAX,
        upload,
    }
}

fn uploaded(size: u64) -> Option<Upload> {
    Some(Upload {
        size,
        content_type: Some("application/pdf".to_owned()),
    })
}

fn created() -> Event {
    Event::Created {
        id: ID,
        legal_entity_id: test_actor().legal_entity_id,
        patient_id: PATIENT,
        patient_case_id: Some(9),
        user_id: test_actor().user_id,
        user_number: 3,
        description: Some("Referral letter".to_owned()),
        filename: "scan.pdf".to_owned(),
        upload_key: key(),
        declared_type: Some("application/pdf".to_owned()),
        at: test_now(),
    }
}

fn copied(sniffed: Option<&str>) -> Examined {
    Examined::Copied {
        size: 10,
        sha256: "ab".repeat(32),
        sniffed_type: sniffed.map(str::to_owned),
        declared_type: Some("application/pdf".to_owned()),
        object_key: final_key(test_actor().legal_entity_id, ID, "scan.pdf"),
    }
}

fn process(examined: Option<Examined>) -> Command {
    Command::Process {
        upload_key: key(),
        object_key: final_key(test_actor().legal_entity_id, ID, "scan.pdf"),
        examined,
    }
}

fn processed(content_type: &str) -> Event {
    Event::Processed {
        size: 10,
        sha256: "ab".repeat(32),
        content_type: content_type.to_owned(),
        object_key: final_key(test_actor().legal_entity_id, ID, "scan.pdf"),
        at: test_now(),
    }
}

fn archived() -> Event {
    Event::Archived { at: test_now() }
}

fn stranger() -> Actor {
    Actor {
        user_id: Uuid::from_u128(0x2222),
        legal_entity_id: Uuid::from_u128(0xBBBB),
        client_type: ClientType::Msp,
    }
}

#[test]
fn an_uploaded_file_is_created_with_the_id_decided_into_the_event() {
    given::<Attachments>([])
        .when(create(uploaded(10)))
        .then([created()]);
}

#[test]
fn a_created_attachment_is_not_processed_yet() {
    let state = Attachments::fold(&[created()]);
    let attachment = state.0.unwrap();
    assert_eq!(attachment.id, ID);
    assert!(!attachment.processing_completed());
    assert_eq!(attachment.size, None);
    assert_eq!(attachment.filename, "scan.pdf");
}

#[test]
fn create_without_an_upload_is_422_on_upload_url() {
    given::<Attachments>([])
        .when(create(None))
        .then_invalid("$.upload_url");
}

#[test]
fn create_for_a_key_of_another_patient_is_422_on_upload_url() {
    let mut command = create(uploaded(10));
    if let Command::Create { upload_key: k, .. } = &mut command {
        *k = upload_key(
            test_actor().legal_entity_id,
            PATIENT + 1,
            Uuid::from_u128(1),
            "x.pdf",
        );
    }
    given::<Attachments>([])
        .when(command)
        .then_invalid("$.upload_url");
}

#[test]
fn create_for_a_key_of_another_legal_entity_is_422_on_upload_url() {
    given::<Attachments>([])
        .with_ctx(|ctx| ctx.actor = stranger())
        .when(create(uploaded(10)))
        .then_invalid("$.upload_url");
}

#[test]
fn create_for_a_key_outside_the_temporary_prefix_is_422() {
    let mut command = create(uploaded(10));
    if let Command::Create { upload_key: k, .. } = &mut command {
        *k = final_key(test_actor().legal_entity_id, 1, "x.pdf");
    }
    given::<Attachments>([])
        .when(command)
        .then_invalid("$.upload_url");
}

#[test]
fn a_description_over_255_characters_is_422() {
    let mut command = create(uploaded(10));
    if let Command::Create { description, .. } = &mut command {
        *description = Some("é".repeat(256));
    }
    let rejection = given::<Attachments>([]).when(command).result().unwrap_err();
    assert_eq!(rejection.status, 422);
    assert_eq!(rejection.invalid[0].entry, "$.description");
    assert_eq!(
        rejection.invalid[0].rules[0].description,
        DESCRIPTION_TOO_LONG
    );
}

#[test]
fn a_description_with_a_nul_character_is_422() {
    let mut command = create(uploaded(10));
    if let Command::Create { description, .. } = &mut command {
        *description = Some("a\0b".to_owned());
    }
    given::<Attachments>([])
        .when(command)
        .then_invalid("$.description");
}

#[test]
fn a_description_of_255_characters_is_accepted() {
    let mut command = create(uploaded(10));
    if let Command::Create { description, .. } = &mut command {
        *description = Some("é".repeat(255));
    }
    assert_eq!(
        given::<Attachments>([])
            .when(command)
            .result()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn an_upload_over_the_limit_is_422() {
    given::<Attachments>([])
        .when(create(uploaded(MAX + 1)))
        .then_invalid("$.upload_url");
}

#[test]
fn creating_an_existing_attachment_is_409() {
    given::<Attachments>([created()])
        .when(create(uploaded(10)))
        .then_rejected(409, ALREADY_EXISTS);
}

#[test]
fn processing_records_size_hash_and_the_sniffed_type() {
    given::<Attachments>([created()])
        .when(process(Some(copied(Some("image/png")))))
        .then([processed("image/png")]);
}

#[test]
fn the_declared_type_is_kept_when_sniffing_finds_nothing() {
    given::<Attachments>([created()])
        .when(process(Some(copied(None))))
        .then([processed("application/pdf")]);
}

#[test]
fn with_no_type_at_all_the_content_type_is_octet_stream() {
    assert_eq!(content_type(None, None), OCTET_STREAM);
    assert_eq!(content_type(None, Some(" ")), OCTET_STREAM);
    assert_eq!(
        content_type(Some("image/png"), Some("text/plain")),
        "image/png"
    );
}

#[test]
fn a_processed_attachment_is_completed() {
    let state = Attachments::fold(&[created(), processed("image/png")]);
    let attachment = state.0.unwrap();
    assert!(attachment.processing_completed());
    assert_eq!(attachment.size, Some(10));
    assert_eq!(attachment.processed_at, Some(test_now()));
    assert_eq!(
        attachment.object_key.as_deref(),
        Some(final_key(test_actor().legal_entity_id, ID, "scan.pdf").as_str())
    );
}

#[test]
fn a_missing_object_fails_processing_visibly_and_it_stays_incomplete() {
    let failed = Event::ProcessingFailed {
        reason: "the uploaded file is missing".to_owned(),
        at: test_now(),
    };
    given::<Attachments>([created()])
        .when(process(Some(Examined::Failed {
            reason: "the uploaded file is missing".to_owned(),
        })))
        .then([failed.clone()]);
    let attachment = Attachments::fold(&[created(), failed]).0.unwrap();
    assert!(!attachment.processing_completed());
    assert_eq!(
        attachment.processing_error.as_deref(),
        Some("the uploaded file is missing")
    );
}

#[test]
fn processing_with_nothing_examined_fails() {
    given::<Attachments>([created()])
        .when(process(None))
        .then([Event::ProcessingFailed {
            reason: NOT_EXAMINED.to_owned(),
            at: test_now(),
        }]);
}

#[test]
fn processing_a_processed_attachment_appends_nothing() {
    given::<Attachments>([created(), processed("image/png")])
        .when(process(Some(copied(None))))
        .then([]);
}

#[test]
fn processing_other_keys_than_the_attachments_is_409() {
    let command = Command::Process {
        upload_key: key(),
        object_key: final_key(test_actor().legal_entity_id, ID + 1, "scan.pdf"),
        examined: None,
    };
    given::<Attachments>([created()])
        .when(command)
        .then_rejected(409, WRONG_OBJECT);
}

#[test]
fn processing_an_unknown_attachment_is_404() {
    given::<Attachments>([])
        .when(process(None))
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn archiving_sets_archived_at() {
    given::<Attachments>([created()])
        .when(Command::Archive)
        .then([archived()]);
    let attachment = Attachments::fold(&[created(), archived()]).0.unwrap();
    assert_eq!(attachment.archived_at, Some(test_now()));
}

#[test]
fn archiving_twice_appends_nothing_the_second_time() {
    given::<Attachments>([created(), archived()])
        .when(Command::Archive)
        .then([]);
}

#[test]
fn archiving_an_unknown_attachment_is_404() {
    given::<Attachments>([])
        .when(Command::Archive)
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn another_legal_entity_cannot_archive_it() {
    given::<Attachments>([created()])
        .with_ctx(|ctx| ctx.actor = stranger())
        .when(Command::Archive)
        .then_rejected(404, NOT_FOUND);
}

#[test]
fn an_archived_attachment_is_still_processed() {
    given::<Attachments>([created(), archived()])
        .when(process(Some(copied(Some("image/png")))))
        .then([processed("image/png")]);
}

#[test]
fn file_names_are_made_safe_for_keys() {
    assert_eq!(sanitize_filename(None), DEFAULT_FILENAME);
    assert_eq!(sanitize_filename(Some("")), DEFAULT_FILENAME);
    assert_eq!(
        sanitize_filename(Some("../../etc/passwd")),
        "_.._etc_passwd"
    );
    assert_eq!(
        sanitize_filename(Some("my scan (1).pdf")),
        "my_scan__1_.pdf"
    );
    assert_eq!(sanitize_filename(Some("...")), DEFAULT_FILENAME);
    assert_eq!(
        sanitize_filename(Some(&"a".repeat(300))).len(),
        MAX_FILENAME_BYTES
    );
    assert_eq!(sanitize_filename(Some("отчёт.pdf")), "_____.pdf");
}

#[test]
fn upload_keys_name_their_legal_entity_patient_and_file() {
    let le = test_actor().legal_entity_id;
    let key = upload_key(le, PATIENT, Uuid::from_u128(5), "a.png");
    assert!(key.starts_with(&format!("{le}/attachments/temp/{PATIENT}/")));
    assert_eq!(upload_filename(&key, le, PATIENT), Some("a.png"));
    assert_eq!(upload_filename(&key, le, PATIENT + 1), None);
    assert_eq!(
        upload_filename(&key, stranger().legal_entity_id, PATIENT),
        None
    );
    assert_eq!(upload_filename(&format!("{key}/x"), le, PATIENT), None);
}

#[test]
fn stream_ids_are_stable_per_attachment_id() {
    assert_eq!(stream_id(1), stream_id(1));
    assert_ne!(stream_id(1), stream_id(2));
}

#[test]
fn events_round_trip_through_json_with_their_type() {
    for event in [created(), processed("image/png"), archived()] {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event_type"], event.event_type());
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }
}
