//! A projection's row, written once: [`projection_row!`] declares the row struct and, from that one field
//! list, its columns, their PostgreSQL types, how to read it and how to bind it. The statements that write
//! rows — the live write after an append ([`write`]) and the rebuild's multi-row insert ([`insert_all`]) —
//! are built from that list here, so a projection module states only its columns and how to make its row.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::StoreError;

/// A parameter of a statement.
pub type Param<'a> = &'a (dyn ToSql + Sync);

/// One column of a projection's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The column's name, which is also the row field's.
    pub name: &'static str,
    /// Its PostgreSQL type, e.g. `uuid` (the rebuild casts its arrays to it).
    pub sql_type: &'static str,
}

/// What the live write does with a row whose `id` is already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Nothing: a plain `INSERT` (the projection removed the stream's rows first).
    Insert,
    /// `ON CONFLICT (id) DO UPDATE SET` every column but `id`.
    UpdateAll,
    /// `ON CONFLICT (id) DO UPDATE SET` these columns only: the others never change once written.
    Update(&'static [&'static str]),
}

/// A row of a projection's table, declared with [`projection_row!`].
pub trait ProjectionRow: Sized + Send + Sync + 'static {
    /// The live table.
    const TABLE: &'static str;
    /// The columns, in the order of the row's fields.
    const COLUMNS: &'static [Column];
    /// The column names joined with `, `, for `SELECT` lists.
    const COLUMN_LIST: &'static str;
    /// What [`write`] does with a row whose `id` is taken.
    const ON_CONFLICT: OnConflict;

    /// The row's values in column order: the parameters of [`ProjectionRow::write_statement`].
    fn values(&self) -> Vec<Param<'_>>;

    /// One array per column of `rows`, in column order: the parameters of [`insert_all`]'s `unnest`.
    fn arrays(rows: &[Self]) -> Vec<Box<dyn ToSql + Send + Sync + '_>>;

    /// Reads a row selected with [`ProjectionRow::COLUMN_LIST`].
    fn from_row(row: &tokio_postgres::Row) -> Self;

    /// The live write's statement, built once: see [`write_statement`].
    fn write_statement() -> &'static str;
}

/// The PostgreSQL type a row field's Rust type is stored as.
pub trait SqlType {
    /// The type's name, e.g. `timestamptz`.
    const NAME: &'static str;
}

macro_rules! sql_types {
    ($($rust:ty => $name:literal),* $(,)?) => {
        $(impl SqlType for $rust {
            const NAME: &'static str = $name;
        })*
    };
}

sql_types! {
    Uuid => "uuid",
    String => "text",
    i64 => "bigint",
    bool => "boolean",
    NaiveDate => "date",
    DateTime<Utc> => "timestamptz",
    Value => "jsonb",
}

impl<T: SqlType> SqlType for Option<T> {
    const NAME: &'static str = T::NAME;
}

/// Declares a projection's row struct (its fields named as its table's columns, in the table's order) and
/// implements [`ProjectionRow`] for it from the same list:
///
/// ```ignore
/// projection_row! {
///     table: "service_requests",
///     on_conflict: OnConflict::UpdateAll,
///     /// One row of the read model.
///     #[derive(Debug, Clone, PartialEq)]
///     pub struct ServiceRequestRow {
///         /// Id.
///         pub id: Uuid,
///         …
///     }
/// }
/// ```
macro_rules! projection_row {
    (
        table: $table:literal,
        on_conflict: $on_conflict:expr,
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )+
        }

        impl $crate::projection::row::ProjectionRow for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [$crate::projection::row::Column] = &[$(
                $crate::projection::row::Column {
                    name: stringify!($field),
                    sql_type: <$ty as $crate::projection::row::SqlType>::NAME,
                },
            )+];
            const COLUMN_LIST: &'static str = $crate::projection::row::projection_row!(@list $($field),+);
            const ON_CONFLICT: $crate::projection::row::OnConflict = $on_conflict;

            fn values(&self) -> Vec<$crate::projection::row::Param<'_>> {
                vec![$(&self.$field),+]
            }

            fn arrays(
                rows: &[Self],
            ) -> Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync + '_>> {
                vec![$(Box::new(rows.iter().map(|r| &r.$field).collect::<Vec<_>>())),+]
            }

            fn from_row(row: &tokio_postgres::Row) -> Self {
                Self { $($field: row.get(stringify!($field))),+ }
            }

            fn write_statement() -> &'static str {
                static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                TEXT.get_or_init($crate::projection::row::write_statement::<Self>)
            }
        }
    };
    (@list $first:ident $(, $rest:ident)*) => {
        concat!(stringify!($first) $(, ", ", stringify!($rest))*)
    };
}
pub(crate) use projection_row;

/// `INSERT INTO <table> (<columns>) VALUES ($1, …, $n)`, with `ON CONFLICT (id) DO UPDATE SET c =
/// EXCLUDED.c, …` as the row's [`OnConflict`] says.
pub fn write_statement<R: ProjectionRow>() -> String {
    let placeholders: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("${i}")).collect();
    let mut text = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        R::COLUMN_LIST,
        placeholders.join(", ")
    );
    let set: Vec<&str> = match R::ON_CONFLICT {
        OnConflict::Insert => return text,
        OnConflict::UpdateAll => R::COLUMNS
            .iter()
            .map(|c| c.name)
            .filter(|name| *name != "id")
            .collect(),
        OnConflict::Update(columns) => columns.to_vec(),
    };
    let set: Vec<String> = set
        .iter()
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    text.push_str(" ON CONFLICT (id) DO UPDATE SET ");
    text.push_str(&set.join(", "));
    text
}

/// Writes `rows` into the live table after an append, one execution of the prepared
/// [`ProjectionRow::write_statement`] each.
pub async fn write<R: ProjectionRow>(
    client: &impl GenericClient,
    rows: &[R],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let statement = client.prepare_cached(R::write_statement()).await?;
    for row in rows {
        client.execute(&statement, &row.values()).await?;
    }
    Ok(())
}

/// The rows of the live table that match `condition` (what follows `WHERE`: a filter, and any `ORDER BY`,
/// `LIMIT`), selected by their columns with a cached prepared statement.
pub async fn select<R: ProjectionRow>(
    client: &impl GenericClient,
    condition: &str,
    params: &[Param<'_>],
) -> Result<Vec<R>, StoreError> {
    let statement = select_statement::<R>(client, condition).await?;
    let rows = client.query(&statement, params).await?;
    Ok(rows.iter().map(R::from_row).collect())
}

/// `SELECT <the row's columns> FROM <its table> WHERE <condition>`, prepared once per connection.
async fn select_statement<R: ProjectionRow>(
    client: &impl GenericClient,
    condition: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    Ok(client
        .prepare_cached(&format!(
            "SELECT {} FROM {} WHERE {condition}",
            R::COLUMN_LIST,
            R::TABLE
        ))
        .await?)
}

/// The one row of the live table that matches `condition`, if any (see [`select`]).
pub async fn select_one<R: ProjectionRow>(
    client: &impl GenericClient,
    condition: &str,
    params: &[Param<'_>],
) -> Result<Option<R>, StoreError> {
    let statement = select_statement::<R>(client, condition).await?;
    let row = client.query_opt(&statement, params).await?;
    Ok(row.as_ref().map(R::from_row))
}

/// `INSERT INTO <table> (<columns>) SELECT * FROM unnest($1::<type>[], …)`: many rows in one statement.
pub fn insert_all_statement<R: ProjectionRow>(table: &str) -> String {
    let arrays: Vec<String> = R::COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, c.sql_type))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({})",
        R::COLUMN_LIST,
        arrays.join(", ")
    )
}

/// Inserts `rows` into `table` (the projection's table or a rebuild's shadow of it) with one
/// [`insert_all_statement`]; nothing for no rows.
pub async fn insert_all<R: ProjectionRow>(
    client: &impl GenericClient,
    table: &str,
    rows: &[R],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(&insert_all_statement::<R>(table))
        .await?;
    let arrays = R::arrays(rows);
    let params: Vec<Param<'_>> = arrays.iter().map(|a| a.as_ref() as Param<'_>).collect();
    client.execute(&statement, &params).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::{
        analysis_file::AnalysisFileRow, contract_request::ContractRequestRow,
        patient_attachment::PatientAttachmentRow, service_request::ServiceRequestRow,
    };

    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    #[test]
    fn the_service_request_upsert_sets_every_column_but_the_id() {
        assert_eq!(
            words(ServiceRequestRow::write_statement()),
            words(
                "INSERT INTO service_requests (id, patient_id, category, code, program_id, \
                 expiration_date, status, program_processing_status, status_reason, requester_legal_entity_id, \
                 requester_user_id, used_by_legal_entity_id, used_by_employee_id, version, inserted_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                 ON CONFLICT (id) DO UPDATE SET patient_id = EXCLUDED.patient_id, category = EXCLUDED.category, \
                 code = EXCLUDED.code, program_id = EXCLUDED.program_id, expiration_date = EXCLUDED.expiration_date, \
                 status = EXCLUDED.status, program_processing_status = EXCLUDED.program_processing_status, \
                 status_reason = EXCLUDED.status_reason, requester_legal_entity_id = EXCLUDED.requester_legal_entity_id, \
                 requester_user_id = EXCLUDED.requester_user_id, used_by_legal_entity_id = EXCLUDED.used_by_legal_entity_id, \
                 used_by_employee_id = EXCLUDED.used_by_employee_id, version = EXCLUDED.version, \
                 inserted_at = EXCLUDED.inserted_at, updated_at = EXCLUDED.updated_at"
            )
        );
    }

    #[test]
    fn the_patient_attachment_upsert_sets_only_what_processing_and_archiving_change() {
        assert_eq!(
            words(PatientAttachmentRow::write_statement()),
            words(
                "INSERT INTO patient_attachments (id, stream_id, legal_entity_id, patient_id, \
                 patient_case_id, user_id, user_number, description, filename, upload_key, object_key, content_type, \
                 size, sha256, processed_at, processing_completed, processing_error, archived_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
                 ON CONFLICT (id) DO UPDATE SET object_key = EXCLUDED.object_key, content_type = EXCLUDED.content_type, \
                 size = EXCLUDED.size, sha256 = EXCLUDED.sha256, processed_at = EXCLUDED.processed_at, \
                 processing_completed = EXCLUDED.processing_completed, processing_error = EXCLUDED.processing_error, \
                 archived_at = EXCLUDED.archived_at, description = EXCLUDED.description, updated_at = EXCLUDED.updated_at"
            )
        );
    }

    #[test]
    fn the_analysis_file_write_is_a_plain_insert() {
        assert_eq!(
            words(AnalysisFileRow::write_statement()),
            words(
                "INSERT INTO analysis_files (id, stream_id, legal_entity_id, patient_id, analysis_id, file_name, \
                 object_key, size, content_type, etag, is_send, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )
        );
    }

    #[test]
    fn the_rebuild_insert_casts_each_array_to_its_column_type() {
        assert_eq!(
            words(&insert_all_statement::<ContractRequestRow>("contract_requests_rebuild")),
            words(
                "INSERT INTO contract_requests_rebuild (id, contract_type, status, contractor_legal_entity_id, \
                 edrpou, contract_number, start_date, end_date, signed_content_key, data, version, inserted_at, \
                 updated_at) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], \
                 $4::uuid[], $5::text[], $6::text[], $7::date[], $8::date[], $9::text[], $10::jsonb[], \
                 $11::bigint[], $12::timestamptz[], $13::timestamptz[])"
            )
        );
        assert_eq!(
            words(&insert_all_statement::<PatientAttachmentRow>("patient_attachments")),
            words(
                "INSERT INTO patient_attachments (id, stream_id, legal_entity_id, patient_id, \
                 patient_case_id, user_id, user_number, description, filename, upload_key, object_key, content_type, \
                 size, sha256, processed_at, processing_completed, processing_error, archived_at, created_at, updated_at) \
                 SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], \
                 $4::bigint[], $5::bigint[], $6::uuid[], $7::bigint[], $8::text[], $9::text[], $10::text[], \
                 $11::text[], $12::text[], $13::bigint[], $14::text[], $15::timestamptz[], $16::boolean[], \
                 $17::text[], $18::timestamptz[], $19::timestamptz[], $20::timestamptz[])"
            )
        );
    }
}
