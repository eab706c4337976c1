//! Given/when/then tests of every media-link rule.

#![allow(clippy::unwrap_used)]

use chrono::{Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::{
    testing::{given, test_actor, test_now},
    Actor, ClientType,
};

type Links = MediaLinkAggregate;

const OTHER_CLINIC: Uuid = Uuid::from_u128(0xC11);
const BUCKET: &str = "ambulatory-contracts";
const TTL: u64 = 600;

fn nhs() -> Actor {
    Actor {
        user_id: Uuid::from_u128(0x2222),
        legal_entity_id: Uuid::from_u128(0xBBBB),
        client_type: ClientType::Nhs,
    }
}

fn issue(action: Action, resource_id: Uuid, name: &str, content_type: Option<&str>) -> Command {
    Command::Issue {
        link_action: action,
        resource_id,
        resource_name: name.to_owned(),
        content_type: content_type.map(str::to_owned),
        bucket: BUCKET.to_owned(),
        ttl_seconds: TTL,
    }
}

fn issued(
    actor: Actor,
    action: Action,
    resource_id: Uuid,
    name: &str,
    content_type: Option<&str>,
) -> Event {
    Event::Issued {
        issued_to: actor,
        action,
        bucket: BUCKET.to_owned(),
        resource_id,
        resource_name: name.to_owned(),
        object_key: format!("{resource_id}/{name}"),
        content_type: content_type.map(str::to_owned),
        issued_at: test_now(),
        expires_at: test_now() + Duration::seconds(600),
    }
}

fn own() -> Uuid {
    test_actor().legal_entity_id
}

#[test]
fn a_put_link_to_the_callers_own_folder_is_issued_with_its_content_type() {
    given::<Links>([])
        .when(issue(
            Action::Put,
            own(),
            "statute.pdf",
            Some("application/pdf"),
        ))
        .then([issued(
            test_actor(),
            Action::Put,
            own(),
            "statute.pdf",
            Some("application/pdf"),
        )]);
}

#[test]
fn get_and_head_links_are_issued_after_earlier_links_alike() {
    let earlier = issued(test_actor(), Action::Put, own(), "a.pdf", None);
    for action in [Action::Get, Action::Head] {
        given::<Links>([earlier.clone()])
            .when(issue(action, own(), "a.pdf", None))
            .then([issued(test_actor(), action, own(), "a.pdf", None)]);
    }
}

#[test]
fn the_folder_is_the_callers_own_legal_entity_unless_named() {
    assert_eq!(folder(None, &test_actor()), Ok(own()));
    assert_eq!(folder(Some(own()), &test_actor()), Ok(own()));
    assert_eq!(folder(None, &nhs()), Ok(nhs().legal_entity_id));
}

#[test]
fn only_nhs_may_name_another_legal_entitys_folder() {
    assert_eq!(folder(Some(OTHER_CLINIC), &nhs()), Ok(OTHER_CLINIC));
    for client_type in [
        ClientType::Msp,
        ClientType::PrimaryCare,
        ClientType::Pharmacy,
        ClientType::MspPharmacy,
        ClientType::Mis,
    ] {
        let actor = Actor {
            client_type,
            ..test_actor()
        };
        assert_eq!(folder(Some(OTHER_CLINIC), &actor).unwrap_err().status, 403);
        given::<Links>([])
            .with_ctx(|ctx| ctx.actor = actor)
            .when(issue(Action::Get, OTHER_CLINIC, "a.pdf", None))
            .then_rejected(403, FOREIGN_FOLDER);
    }
}

#[test]
fn nhs_gets_a_link_to_a_clinics_folder_recorded_as_issued_to_nhs() {
    given::<Links>([])
        .with_ctx(|ctx| ctx.actor = nhs())
        .when(issue(Action::Get, OTHER_CLINIC, "statute.pdf", None))
        .then([issued(
            nhs(),
            Action::Get,
            OTHER_CLINIC,
            "statute.pdf",
            None,
        )]);
}

#[test]
fn unsafe_resource_names_are_422_on_the_resource_name() {
    let long = "a".repeat(256);
    for name in [
        "",
        ".",
        "a/b.pdf",
        "../x",
        "a..b",
        "back\\slash",
        "tab\there",
        "nul\0",
        "del\u{7f}",
        long.as_str(),
    ] {
        given::<Links>([])
            .when(issue(Action::Put, own(), name, None))
            .then_invalid("$.secret.resource_name");
    }
    let longest = "é".repeat(127) + "a";
    assert_eq!(longest.len(), 255);
    given::<Links>([])
        .when(issue(Action::Put, own(), &longest, None))
        .then([issued(test_actor(), Action::Put, own(), &longest, None)]);
}

#[test]
fn resource_names_are_percent_decoded_exactly_once() {
    assert_eq!(
        decode_resource_name("contract%20statute.pdf").unwrap(),
        "contract statute.pdf"
    );
    assert_eq!(decode_resource_name("a%2525b").unwrap(), "a%25b");
    assert_eq!(decode_resource_name("a+b").unwrap(), "a+b");
    assert_eq!(
        decode_resource_name("%D0%B4%D0%BE%D0%B3%D0%BE%D0%B2%D1%96%D1%80.pdf").unwrap(),
        "договір.pdf"
    );
    assert_eq!(decode_resource_name("plain.pdf").unwrap(), "plain.pdf");
    // An encoded slash is still a slash once decoded: refused by the name's rules.
    let decoded = decode_resource_name("a%2Fb").unwrap();
    assert_eq!(
        validate_resource_name(&decoded).unwrap_err().invalid[0].entry,
        "$.secret.resource_name"
    );
}

#[test]
fn a_broken_escape_or_a_name_that_is_not_utf8_once_decoded_is_422() {
    for raw in ["100%", "a%2", "a%zz.pdf", "%FF.pdf", "%C3"] {
        let rejection = decode_resource_name(raw).unwrap_err();
        assert_eq!(rejection.status, 422, "{raw}");
        assert_eq!(rejection.invalid[0].entry, "$.secret.resource_name");
    }
}

#[test]
fn a_content_type_is_for_put_links_only() {
    for action in [Action::Get, Action::Head] {
        given::<Links>([])
            .when(issue(action, own(), "a.pdf", Some("application/pdf")))
            .then_invalid("$.secret.content_type");
    }
}

#[test]
fn a_malformed_content_type_is_422() {
    let long = format!("application/{}", "x".repeat(250));
    for content_type in [
        "",
        "pdf",
        "application/",
        "/pdf",
        "application/pdf\r\nx-evil: 1",
        "text/plain; charset=\u{e9}",
        "a b/c",
        long.as_str(),
    ] {
        given::<Links>([])
            .when(issue(Action::Put, own(), "a.pdf", Some(content_type)))
            .then_invalid("$.secret.content_type");
    }
    for content_type in [
        "application/pdf",
        "text/plain; charset=utf-8",
        "image/svg+xml",
    ] {
        assert_eq!(
            validate_content_type(Action::Put, Some(content_type)),
            Ok(()),
            "{content_type}"
        );
    }
}

#[test]
fn the_link_is_signed_at_a_whole_second_and_expires_ttl_later() {
    let now = Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 7).unwrap() + Duration::milliseconds(812);
    let events = given::<Links>([])
        .with_ctx(|ctx| ctx.now = now)
        .when(issue(Action::Get, own(), "a.pdf", None))
        .result()
        .unwrap();
    let Event::Issued {
        issued_at,
        expires_at,
        ..
    } = &events[0];
    assert_eq!(
        *issued_at,
        Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 7).unwrap()
    );
    assert_eq!(*expires_at, *issued_at + Duration::seconds(600));
}

#[test]
fn a_lifetime_outside_the_sigv4_bounds_is_refused() {
    for ttl_seconds in [0, MAX_TTL_SECONDS + 1] {
        let rejection = given::<Links>([])
            .when(Command::Issue {
                link_action: Action::Get,
                resource_id: own(),
                resource_name: "a.pdf".to_owned(),
                content_type: None,
                bucket: BUCKET.to_owned(),
                ttl_seconds,
            })
            .result()
            .unwrap_err();
        assert_eq!(rejection.status, 422);
    }
}

#[test]
fn the_folder_summary_counts_links_and_the_stream_is_derived_from_the_folder() {
    let mut later = issued(test_actor(), Action::Get, own(), "a.pdf", None);
    let Event::Issued { issued_at, .. } = &mut later;
    *issued_at = test_now() + Duration::minutes(5);
    let state = Links::fold(&[
        issued(test_actor(), Action::Put, own(), "a.pdf", None),
        later,
    ]);
    assert_eq!(
        state,
        Folder {
            resource_id: Some(own()),
            links_issued: 2,
            last_issued_at: Some(test_now() + Duration::minutes(5)),
        }
    );
    assert_eq!(stream_id(own()), stream_id(own()));
    assert_ne!(stream_id(own()), own());
    assert_ne!(stream_id(own()), stream_id(OTHER_CLINIC));
}

#[test]
fn events_and_commands_round_trip_through_json_with_their_names() {
    let event = issued(
        test_actor(),
        Action::Put,
        own(),
        "a.pdf",
        Some("application/pdf"),
    );
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["event_type"], event.event_type());
    assert_eq!(json["data"]["action"], "PUT");
    assert_eq!(json["data"]["issued_to"]["client_type"], "MSP");
    assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    let command = issue(Action::Head, own(), "a.pdf", None);
    let json = serde_json::to_value(&command).unwrap();
    assert_eq!(json["action"], command.name());
    assert_eq!(json["link_action"], "HEAD");
    assert_eq!(serde_json::from_value::<Command>(json).unwrap(), command);
}
