//! Given/when/then tests of every analysis-file transition and rejection.

#![allow(clippy::unwrap_used)]

use uuid::Uuid;

use super::*;
use crate::{
    testing::{given, test_actor, test_now},
    Actor, ClientType,
};

type Files = AnalysisFilesAggregate;

const PATIENT: Uuid = Uuid::from_u128(0x9a);
const ANALYSIS: Uuid = Uuid::from_u128(0xa1);
const MAX: u64 = 1000;

fn stream() -> Uuid {
    stream_id(test_actor().legal_entity_id, PATIENT, ANALYSIS)
}

/// The key of the `n`th upload link (of any name: names are not part of keys).
fn key(_name: &str, n: u32) -> String {
    upload_key(stream(), Uuid::from_u128(u128::from(n) + 1))
}

fn object(name: &str, generation: u32, size: u64) -> StoredObject {
    StoredObject {
        key: key(name, generation),
        size,
        content_type: "application/pdf".to_owned(),
        etag: "\"abc\"".to_owned(),
    }
}

fn finalize(name: &str, object: Option<StoredObject>) -> Command {
    Command::Finalize {
        patient_id: PATIENT,
        analysis_id: ANALYSIS,
        file_name: name.to_owned(),
        max_bytes: MAX,
        upload_key: object.as_ref().map(|o| o.key.clone()),
        object,
    }
}

fn recorded_at(name: &str, generation: u32) -> Event {
    let object_key = key(name, generation);
    Event::FileRecorded {
        file_id: Analysis::file_id(&object_key),
        legal_entity_id: test_actor().legal_entity_id,
        patient_id: PATIENT,
        analysis_id: ANALYSIS,
        file_name: name.to_owned(),
        object_key,
        size: 10,
        content_type: "application/pdf".to_owned(),
        etag: "\"abc\"".to_owned(),
        at: test_now(),
    }
}

fn recorded(name: &str) -> Event {
    recorded_at(name, 0)
}

fn id_of(name: &str, generation: u32) -> Uuid {
    Analysis::file_id(&key(name, generation))
}

fn deleted(name: &str, generation: u32) -> Event {
    Event::FileDeleted {
        file_id: id_of(name, generation),
        file_name: name.to_owned(),
        object_key: key(name, generation),
        at: test_now(),
    }
}

#[test]
fn finalize_records_the_uploaded_object_not_to_be_sent() {
    given::<Files>([])
        .when(finalize("result.pdf", Some(object("result.pdf", 0, 10))))
        .then([recorded("result.pdf")]);
    let state = Files::fold(&[recorded("result.pdf")]);
    let file = state.by_name("result.pdf").unwrap();
    assert!(!file.is_send);
    assert_eq!(file.size, 10);
}

#[test]
fn finalize_without_an_uploaded_object_is_409() {
    given::<Files>([])
        .when(finalize("result.pdf", None))
        .then_rejected(409, NOT_UPLOADED);
}

#[test]
fn finalize_of_an_object_outside_the_analysis_stream_is_409() {
    let elsewhere = StoredObject {
        key: upload_key(
            stream_id(Uuid::from_u128(0xBBBB), PATIENT, ANALYSIS),
            Uuid::from_u128(1),
        ),
        ..object("result.pdf", 0, 10)
    };
    given::<Files>([])
        .when(finalize("result.pdf", Some(elsewhere)))
        .then_rejected(409, NOT_UPLOADED);
}

#[test]
fn finalize_of_an_existing_name_is_409() {
    given::<Files>([recorded("result.pdf")])
        .when(finalize("result.pdf", Some(object("result.pdf", 0, 10))))
        .then_rejected(409, FILE_EXISTS);
}

#[test]
fn finalize_of_an_object_over_the_limit_is_422() {
    given::<Files>([])
        .when(finalize("big.pdf", Some(object("big.pdf", 0, MAX + 1))))
        .then_invalid("$.file");
    given::<Files>([])
        .when(finalize("max.pdf", Some(object("max.pdf", 0, MAX))))
        .result()
        .unwrap();
}

#[test]
fn bad_file_names_are_422() {
    let long = "a".repeat(MAX_FILE_NAME_BYTES + 1);
    for name in [
        "",
        ".",
        "a/b",
        "a\\b",
        "..",
        "a..b",
        "tab\there",
        "nul\0",
        long.as_str(),
    ] {
        given::<Files>([])
            .when(finalize(name, Some(object(name, 0, 1))))
            .then_invalid("$.fileName");
        assert!(validate_file_name(name).is_err(), "{name:?}");
    }
    for name in [
        "результат аналізу.pdf",
        "a b (1).PDF",
        ".hidden",
        "a.",
        &"a".repeat(MAX_FILE_NAME_BYTES),
    ] {
        assert!(validate_file_name(name).is_ok(), "{name:?}");
    }
}

#[test]
fn another_legal_entity_finalizes_into_its_own_stream() {
    // The same upload key seen by another legal entity is not its key: nothing was uploaded for it.
    let other = Actor {
        legal_entity_id: Uuid::from_u128(0xBBBB),
        ..test_actor()
    };
    given::<Files>([])
        .with_ctx(|ctx| ctx.actor = other)
        .when(finalize("result.pdf", Some(object("result.pdf", 0, 10))))
        .then_rejected(409, NOT_UPLOADED);
    assert_ne!(
        stream_id(Uuid::from_u128(0xBBBB), PATIENT, ANALYSIS),
        stream()
    );
    assert_eq!(test_actor().client_type, ClientType::Msp);
}

#[test]
fn upload_target_is_refused_for_a_taken_name_and_every_link_gets_a_key_of_its_own() {
    let (first, second) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let state = Files::fold(&[recorded("a.pdf")]);
    assert_eq!(
        upload_target(&state, stream(), "a.pdf", first)
            .unwrap_err()
            .status,
        409
    );
    assert_eq!(
        upload_target(&state, stream(), "b.pdf", first).unwrap(),
        key("b.pdf", 0)
    );
    assert_ne!(
        upload_target(&state, stream(), "b.pdf", first).unwrap(),
        upload_target(&state, stream(), "b.pdf", second).unwrap()
    );
    let state = Files::fold(&[recorded("a.pdf"), deleted("a.pdf", 0)]);
    assert_eq!(
        upload_target(&state, stream(), "a.pdf", second).unwrap(),
        key("a.pdf", 1)
    );
    assert!(is_upload_key_of(&key("a.pdf", 1), stream()));
    assert!(!is_upload_key_of(
        &key("a.pdf", 1),
        stream_id(Uuid::from_u128(0xBBBB), PATIENT, ANALYSIS)
    ));
    assert!(!is_upload_key_of(
        &format!("{}/0/a.pdf", stream()),
        stream()
    ));
}

#[test]
fn finalize_of_an_object_that_is_not_the_newest_links_key_is_409() {
    let mut command = finalize("a.pdf", Some(object("a.pdf", 0, 10)));
    if let Command::Finalize { upload_key, .. } = &mut command {
        *upload_key = Some(key("a.pdf", 1));
    }
    given::<Files>([])
        .when(command)
        .then_rejected(409, NOT_UPLOADED);
}

#[test]
fn a_deleted_name_can_be_uploaded_again_as_a_new_file() {
    given::<Files>([recorded("a.pdf"), deleted("a.pdf", 0)])
        .when(finalize("a.pdf", Some(object("a.pdf", 1, 10))))
        .then([recorded_at("a.pdf", 1)]);
    assert_ne!(id_of("a.pdf", 0), id_of("a.pdf", 1));
}

#[test]
fn set_send_flips_the_flag_and_a_repeat_changes_nothing() {
    let id = id_of("a.pdf", 0);
    given::<Files>([recorded("a.pdf")])
        .when(Command::SetSend {
            file_id: id,
            is_send: true,
        })
        .then([Event::SendFlagChanged {
            file_id: id,
            is_send: true,
            at: test_now(),
        }]);
    let sent = Event::SendFlagChanged {
        file_id: id,
        is_send: true,
        at: test_now(),
    };
    given::<Files>([recorded("a.pdf"), sent.clone()])
        .when(Command::SetSend {
            file_id: id,
            is_send: true,
        })
        .then([]);
    given::<Files>([recorded("a.pdf"), sent])
        .when(Command::SetSend {
            file_id: id,
            is_send: false,
        })
        .then([Event::SendFlagChanged {
            file_id: id,
            is_send: false,
            at: test_now(),
        }]);
}

#[test]
fn set_send_of_an_unknown_file_is_404() {
    given::<Files>([recorded("a.pdf")])
        .when(Command::SetSend {
            file_id: Uuid::from_u128(1),
            is_send: true,
        })
        .then_rejected(404, FILE_NOT_FOUND);
}

#[test]
fn delete_removes_the_file_and_names_its_object() {
    given::<Files>([recorded("a.pdf")])
        .when(Command::Delete {
            file_id: id_of("a.pdf", 0),
        })
        .then([deleted("a.pdf", 0)]);
    let state = Files::fold(&[recorded("a.pdf"), deleted("a.pdf", 0)]);
    assert!(state.files.is_empty());
}

#[test]
fn delete_of_an_unknown_or_deleted_file_is_404() {
    given::<Files>([])
        .when(Command::Delete {
            file_id: id_of("a.pdf", 0),
        })
        .then_rejected(404, FILE_NOT_FOUND);
    given::<Files>([recorded("a.pdf"), deleted("a.pdf", 0)])
        .when(Command::Delete {
            file_id: id_of("a.pdf", 0),
        })
        .then_rejected(404, FILE_NOT_FOUND);
}

#[test]
fn commands_and_events_round_trip_through_json() {
    let command = finalize("a.pdf", None);
    let json = serde_json::to_value(&command).unwrap();
    assert_eq!(json["action"], "finalize");
    assert!(json.get("object").is_some());
    let mut without_object = json.clone();
    without_object.as_object_mut().unwrap().remove("object");
    assert_eq!(
        serde_json::from_value::<Command>(without_object).unwrap(),
        command
    );
    let event = recorded("a.pdf");
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["event_type"], event.event_type());
    assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
}
