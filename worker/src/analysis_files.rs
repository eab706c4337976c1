//! How the worker runs analysis-file commands (spec 000): HEAD the upload before the job's transaction, answer with the
//! file, and after the commit delete removed or refused objects and announce files to send.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use ehealth_domain::{
    analysis_file::{AnalysisFilesAggregate, Command, Event, State, StoredObject},
    Context, Rejection,
};
use ehealth_infra::{
    jobs::{JobStatus, Link, Outcome},
    projection::{analysis_file::AnalysisFileRow, Projection},
    storage::Storage,
    StoreError,
};
use serde_json::json;
use uuid::Uuid;

use crate::handler::{Effects, Handled};

/// Routing key of the integration event that asks downstream senders to send a file to the patient.
pub const SEND_REQUESTED: &str = "analysis_file.send_requested";
/// Lifetime of the download link in a send request: long enough for a sender that is behind.
pub const SEND_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

impl Handled for AnalysisFilesAggregate {
    /// Finalize: looks at what storage holds under the newest upload link's key.
    async fn observe(command: &mut Command, storage: &Storage) -> Result<(), StoreError> {
        if let Command::Finalize {
            upload_key: Some(key),
            object,
            ..
        } = command
        {
            *object = storage
                .head(&storage.files_bucket, key)
                .await?
                .map(|info| StoredObject {
                    key: key.clone(),
                    size: info.size,
                    content_type: info.content_type,
                    etag: info.etag,
                });
        }
        Ok(())
    }

    /// 200 with the file, as the document answers every file call.
    async fn answer(
        _tx: &impl GenericClient,
        stream_id: Uuid,
        command: &Command,
        before: &State,
        after: &State,
    ) -> Result<Outcome, StoreError> {
        let file = match command {
            Command::Finalize { file_name, .. } => after.by_name(file_name),
            Command::SetSend { file_id, .. } => after.files.get(file_id),
            Command::Delete { file_id } => before.files.get(file_id),
        };
        let row = file.map(|f| AnalysisFileRow::from_file(stream_id, f));
        let links = match (&row, command) {
            (Some(row), Command::Finalize { .. } | Command::SetSend { .. }) => vec![Link {
                entity: Self::ENTITY.to_owned(),
                href: row.href(),
            }],
            _ => Vec::new(),
        };
        Ok(Outcome {
            status: JobStatus::Processed,
            status_code: 200,
            response: row.map(|r| r.to_json()).unwrap_or_default(),
            links,
        })
    }

    /// Deleted files and refused oversized uploads lose their objects; a file marked to be sent is announced
    /// with a download link.
    async fn effects(
        command: &Command,
        before: &State,
        decision: &Result<Vec<Event>, Rejection>,
        ctx: &Context,
        storage: &Storage,
    ) -> Result<Effects, StoreError> {
        let bucket = &storage.files_bucket;
        let mut effects = Effects::default();
        match decision {
            Err(rejection) if rejection.status == 422 => {
                if let Command::Finalize {
                    object: Some(object),
                    ..
                } = command
                {
                    effects.deletions.push((bucket.clone(), object.key.clone()));
                }
            }
            Err(_) => {}
            Ok(events) => {
                for event in events {
                    match event {
                        Event::FileDeleted { object_key, .. } => {
                            effects.deletions.push((bucket.clone(), object_key.clone()));
                        }
                        Event::SendFlagChanged {
                            file_id,
                            is_send: true,
                            at,
                        } => {
                            let Some(file) = before.files.get(file_id) else {
                                continue;
                            };
                            let link = storage
                                .presign_get(bucket, &file.object_key, SEND_LINK_TTL)
                                .await?;
                            effects.events.push((
                                SEND_REQUESTED.to_owned(),
                                json!({
                                    "event_type": SEND_REQUESTED,
                                    "legal_entity_id": file.legal_entity_id,
                                    "patient_id": file.patient_id,
                                    "analysis_id": file.analysis_id,
                                    "file_id": file.id,
                                    "file_name": file.file_name,
                                    "content_type": file.content_type,
                                    "size": file.size,
                                    "download_url": link.url,
                                    "download_url_expires_at": link.expires_at,
                                    "event_time": at,
                                    "changed_by": ctx.actor.user_id,
                                }),
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(effects)
    }
}
