//! How the worker runs patient-attachment commands (spec 002).
//!
//! - `create`: HEAD the uploaded temporary object before the transaction (`observe`); the decision records
//!   it; the same transaction chains the `process` job (with its outbox row). Answers 201 with the
//!   attachment (`processing_completed: false`).
//! - `process`: stream the temporary object (size, SHA-256, sniffed type: `Storage::digest`, never buffered
//!   whole) and copy it to its final key, before the transaction; the decision records `processed`, and the
//!   temporary object is deleted after the commit. A missing object records `processing_failed` and the job
//!   fails with the reason; a storage fault (the store down, a stalled body) is a transient error: the
//!   message is retried, and dead-lettered once attempts run out.
//! - `archive`: answers 204; archiving an archived attachment appends nothing.

use deadpool_postgres::GenericClient;
use ehealth_domain::{
    patient_attachment::{
        final_key, Command, Event, Examined, PatientAttachmentAggregate, State, Upload,
    },
    Aggregate, Context, Rejection,
};
use ehealth_infra::{
    jobs::{JobStatus, Link, Outcome},
    projection::{
        patient_attachment::{href, PatientAttachmentRow},
        Projection,
    },
    storage::Storage,
    StoreError,
};
use serde_json::Value;
use uuid::Uuid;

use crate::handler::{Effects, Handled};

/// The reason processing fails with when the uploaded object is gone.
pub const OBJECT_MISSING: &str = "the uploaded file is missing from storage";

/// The job type of the processing job a create chains.
pub fn process_job_type() -> String {
    format!("{}.process", PatientAttachmentAggregate::STREAM_TYPE)
}

impl Handled for PatientAttachmentAggregate {
    /// Create: HEAD the upload. Process: stream it through the digest and copy it to its final key.
    async fn observe(command: &mut Command, storage: &Storage) -> Result<(), StoreError> {
        let bucket = &storage.attachments_bucket;
        match command {
            Command::Create {
                upload_key, upload, ..
            } => {
                *upload = storage.head(bucket, upload_key).await?.map(|info| Upload {
                    size: info.size,
                    content_type: Some(info.content_type),
                });
            }
            Command::Process {
                upload_key,
                object_key,
                examined,
            } => {
                *examined = Some(match storage.digest(bucket, upload_key).await? {
                    Some(digest) => {
                        storage.copy(bucket, upload_key, object_key).await?;
                        Examined::Copied {
                            size: digest.size,
                            sha256: digest.sha256,
                            sniffed_type: digest.sniffed_type,
                            declared_type: digest.declared_type,
                            object_key: object_key.clone(),
                        }
                    }
                    None => Examined::Failed {
                        reason: OBJECT_MISSING.to_owned(),
                    },
                });
            }
            Command::Archive => {}
        }
        Ok(())
    }

    /// Create 201 and process 200 with the attachment (links relative: the api makes them absolute);
    /// archive 204; a processing that failed is a failed job (422 on `upload_url` with the reason).
    async fn answer(
        _tx: &impl GenericClient,
        stream_id: Uuid,
        command: &Command,
        _before: &State,
        after: &State,
    ) -> Result<Outcome, StoreError> {
        let Some(attachment) = &after.0 else {
            return Ok(Outcome {
                status: JobStatus::Processed,
                status_code: 204,
                response: Value::Null,
                links: Vec::new(),
            });
        };
        let row = PatientAttachmentRow::from_attachment(stream_id, attachment);
        let links = vec![Link {
            entity: Self::ENTITY.to_owned(),
            href: href(row.id),
        }];
        let (status, status_code, response) = match command {
            Command::Create { .. } => (JobStatus::Processed, 201, row.to_json("")),
            Command::Archive => (JobStatus::Processed, 204, Value::Null),
            Command::Process { .. } => match &attachment.processing_error {
                Some(reason) if !attachment.processing_completed() => {
                    let rejection = Rejection::invalid("$.upload_url", "processing", reason);
                    (JobStatus::Failed, 422, rejection.error_object())
                }
                _ => (JobStatus::Processed, 200, row.to_json("")),
            },
        };
        Ok(Outcome {
            status,
            status_code,
            response,
            links,
        })
    }

    /// A recorded upload chains its processing; a processed one loses its temporary object after the commit;
    /// an upload refused as too large is deleted.
    async fn effects(
        command: &Command,
        before: &State,
        decision: &Result<Vec<Event>, Rejection>,
        ctx: &Context,
        storage: &Storage,
    ) -> Result<Effects, StoreError> {
        let bucket = &storage.attachments_bucket;
        let mut effects = Effects::default();
        match (command, decision) {
            (
                Command::Create {
                    upload_key,
                    upload: Some(_),
                    ..
                },
                Err(rejection),
            ) if rejection
                .invalid
                .iter()
                .any(|e| e.rules.iter().any(|r| r.rule == "size")) =>
            {
                effects.deletions.push((bucket.clone(), upload_key.clone()));
            }
            (_, Err(_)) => {}
            (_, Ok(events)) => {
                for event in events {
                    match event {
                        Event::Created {
                            id,
                            filename,
                            upload_key,
                            ..
                        } => {
                            let process = Command::Process {
                                upload_key: upload_key.clone(),
                                object_key: final_key(ctx.actor.legal_entity_id, *id, filename),
                                examined: None,
                            };
                            effects
                                .chained
                                .push((process_job_type(), serde_json::to_value(&process)?));
                        }
                        Event::Processed { .. } => {
                            if let Some(attachment) = &before.0 {
                                effects
                                    .deletions
                                    .push((bucket.clone(), attachment.upload_key.clone()));
                            }
                        }
                        Event::ProcessingFailed { .. } | Event::Archived { .. } => {}
                    }
                }
            }
        }
        Ok(effects)
    }
}
