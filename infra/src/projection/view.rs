//! A stream's read model as the api answers it, folded from any prefix of its events: what auditors see
//! when they travel back in time (`GET /api/audit/streams/{id}?as_of=…`).
//!
//! It is the row [`Projection::project`](super::Projection::project) — and so a rebuild — would write for
//! that state, rendered with the row's own `to_json`, and it writes nothing.

use ehealth_domain::{
    analysis_file::AnalysisFilesAggregate, patient_attachment::PatientAttachmentAggregate,
    service_request::ServiceRequestAggregate, Aggregate,
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    analysis_file::AnalysisFileRow, patient_attachment::PatientAttachmentRow,
    service_request::ServiceRequestRow,
};
use crate::{
    event_store::{self, StoredEvent},
    StoreError,
};

/// The read model of stream `stream_id` after `events` (oldest first, a prefix of the stream): for a service
/// request its row (`null` before it was created), for an analysis its live files oldest first, as the
/// files list orders them; `null` for a stream type without a read model.
pub fn state_json(
    stream_type: &str,
    stream_id: Uuid,
    events: &[StoredEvent],
) -> Result<Value, StoreError> {
    if stream_type == ServiceRequestAggregate::STREAM_TYPE {
        let loaded = event_store::fold_stored::<ServiceRequestAggregate>(events)?;
        let row = match (
            loaded.state.0.as_ref(),
            loaded.first_recorded_at,
            loaded.last_recorded_at,
        ) {
            (Some(sr), Some(first), Some(last)) => Some(ServiceRequestRow::from_state(
                stream_id,
                sr,
                loaded.version,
                first,
                last,
            )),
            _ => None,
        };
        Ok(row.map_or(Value::Null, |row| row.to_json()))
    } else if stream_type == AnalysisFilesAggregate::STREAM_TYPE {
        let loaded = event_store::fold_stored::<AnalysisFilesAggregate>(events)?;
        let mut rows: Vec<AnalysisFileRow> = loaded
            .state
            .files
            .values()
            .map(|file| AnalysisFileRow::from_file(stream_id, file))
            .collect();
        rows.sort_by_key(|row| (row.created_at, row.id));
        Ok(Value::Array(
            rows.iter().map(AnalysisFileRow::to_json).collect(),
        ))
    } else if stream_type == PatientAttachmentAggregate::STREAM_TYPE {
        let loaded = event_store::fold_stored::<PatientAttachmentAggregate>(events)?;
        Ok(loaded.state.0.as_ref().map_or(Value::Null, |attachment| {
            PatientAttachmentRow::from_attachment(stream_id, attachment).to_json("")
        }))
    } else if stream_type
        == <ehealth_domain::contract_request::ContractRequestAggregate as Aggregate>::STREAM_TYPE
    {
        let loaded = event_store::fold_stored::<
            ehealth_domain::contract_request::ContractRequestAggregate,
        >(events)?;
        Ok(loaded
            .state
            .0
            .as_ref()
            .map_or(Value::Null, super::contract_request::render))
    } else if stream_type == ehealth_domain::media_link::MediaLinkAggregate::STREAM_TYPE {
        // Links are not a read model of their own: the folder's summary (the events are the record).
        let folder =
            event_store::fold_stored::<ehealth_domain::media_link::MediaLinkAggregate>(events)?
                .state;
        Ok(serde_json::json!({
            "resource_id": folder.resource_id,
            "links_issued": folder.links_issued,
            "last_issued_at": folder.last_issued_at,
        }))
    } else {
        Ok(Value::Null)
    }
}
