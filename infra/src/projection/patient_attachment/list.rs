//! The attachment lists' query language (spec 002, Cliniko's "Filtering Results" and "Ordering"), compiled
//! to one parameterised statement: `q[]=FIELD:OPVALUE` filters, `sort=FIELD[:asc|:desc],…`, paging.
//!
//! Field names come from a fixed whitelist ([`Field`]) and map to fixed column names; every value is a bound
//! parameter, never spliced into the SQL. The statements are built per request (the combinations of filters
//! and sorts are too many to cache per connection), so they run unprepared-by-name but still with bound
//! parameters (the extended protocol).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PatientAttachmentRow, COLUMNS};
use crate::projection::row::ProjectionRow;
use crate::StoreError;

/// The value type of a filterable field, which decides its operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `>` `>=` `<` `<=` with an RFC 3339 date-time.
    DateTime,
    /// `=` `!=` `>` `>=` `<` `<=` with an integer, and `=1,2,3` for a list.
    Integer,
    /// `=` `!=` `~` (contains) `~~` (SQL `LIKE` pattern with `%`), case-insensitive for `~` and `~~`.
    String,
}

/// A field the lists filter and sort on: the document's "Available filters".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `archived_at` (a filter on it shows archived attachments).
    ArchivedAt,
    /// `content_type`.
    ContentType,
    /// `created_at`.
    CreatedAt,
    /// `description`.
    Description,
    /// `filename`.
    Filename,
    /// `id`.
    Id,
    /// `patient_id`.
    PatientId,
    /// `processed_at`.
    ProcessedAt,
    /// `size`.
    Size,
    /// `updated_at`.
    UpdatedAt,
    /// `user_id` (the user's int64 number).
    UserId,
}

impl Field {
    /// Every field, in the document's order.
    pub const ALL: [Field; 11] = [
        Field::ArchivedAt,
        Field::ContentType,
        Field::CreatedAt,
        Field::Description,
        Field::Filename,
        Field::Id,
        Field::PatientId,
        Field::ProcessedAt,
        Field::Size,
        Field::UpdatedAt,
        Field::UserId,
    ];

    /// The name clients use.
    pub fn name(self) -> &'static str {
        match self {
            Field::ArchivedAt => "archived_at",
            Field::ContentType => "content_type",
            Field::CreatedAt => "created_at",
            Field::Description => "description",
            Field::Filename => "filename",
            Field::Id => "id",
            Field::PatientId => "patient_id",
            Field::ProcessedAt => "processed_at",
            Field::Size => "size",
            Field::UpdatedAt => "updated_at",
            Field::UserId => "user_id",
        }
    }

    /// The column it reads (from this fixed list only).
    fn column(self) -> &'static str {
        match self {
            Field::UserId => "user_number",
            other => other.name(),
        }
    }

    /// Its value type.
    pub fn kind(self) -> Kind {
        match self {
            Field::ArchivedAt | Field::CreatedAt | Field::ProcessedAt | Field::UpdatedAt => {
                Kind::DateTime
            }
            Field::Id | Field::PatientId | Field::Size | Field::UserId => Kind::Integer,
            Field::ContentType | Field::Description | Field::Filename => Kind::String,
        }
    }

    /// The field called `name`.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `~` contains
    Contains,
    /// `~~` SQL pattern
    Like,
}

impl Operator {
    /// Longest first, so `>=` is not read as `>` followed by `=…`.
    const TOKENS: [(&'static str, Operator); 8] = [
        ("!=", Operator::Ne),
        (">=", Operator::Ge),
        ("<=", Operator::Le),
        ("~~", Operator::Like),
        (">", Operator::Gt),
        ("<", Operator::Lt),
        ("=", Operator::Eq),
        ("~", Operator::Contains),
    ];

    fn token(self) -> &'static str {
        Self::TOKENS
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("", |(token, _)| token)
    }

    fn allowed(self, kind: Kind) -> bool {
        use Operator::*;
        match kind {
            Kind::DateTime => matches!(self, Gt | Ge | Lt | Le),
            Kind::Integer => matches!(self, Eq | Ne | Gt | Ge | Lt | Le),
            Kind::String => matches!(self, Eq | Ne | Contains | Like),
        }
    }
}

/// A filter's value, typed by its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A date-time.
    Time(DateTime<Utc>),
    /// An integer.
    Integer(i64),
    /// `=1,2,3`.
    Integers(Vec<i64>),
    /// Text.
    Text(String),
}

/// One `q[]` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The field.
    pub field: Field,
    /// The comparison.
    pub operator: Operator,
    /// The value.
    pub value: Value,
}

/// Why a list request is refused (422): `parameter` names what was wrong (`q[]`, a field name, `sort`,
/// `page`, `per_page`, `order`), `message` says how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter} {message}")]
pub struct QueryError {
    /// The parameter or field the message is about.
    pub parameter: String,
    /// What is wrong, naming the offending field or operator.
    pub message: String,
}

fn query_error(parameter: &str, message: String) -> QueryError {
    QueryError {
        parameter: parameter.to_owned(),
        message,
    }
}

impl Filter {
    /// Parses `FIELD:OPVALUE`, e.g. `created_at:>2014-03-04T20:37:17Z`, `id:=1,2,3`, `filename:~scan`.
    pub fn parse(text: &str) -> Result<Filter, QueryError> {
        let Some((name, rest)) = text.split_once(':') else {
            return Err(query_error(
                "q",
                format!("must be FIELD:OPERATORVALUE, got {text:?}"),
            ));
        };
        let field = Field::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
            query_error(
                "q",
                format!("unknown filter field {name:?}; known: {}", known.join(", ")),
            )
        })?;
        let Some((operator, raw)) = Operator::TOKENS
            .iter()
            .find_map(|(token, op)| rest.strip_prefix(token).map(|raw| (*op, raw)))
        else {
            return Err(query_error(
                field.name(),
                format!("has no operator in {rest:?}"),
            ));
        };
        if !operator.allowed(field.kind()) {
            return Err(query_error(
                field.name(),
                format!("does not take the operator {:?}", operator.token()),
            ));
        }
        let value = match field.kind() {
            Kind::DateTime => DateTime::parse_from_rfc3339(raw)
                .map(|t| Value::Time(t.with_timezone(&Utc)))
                .map_err(|_| {
                    query_error(
                        field.name(),
                        format!("must be an RFC 3339 date-time, got {raw:?}"),
                    )
                })?,
            Kind::Integer => {
                let parse = |v: &str| {
                    v.trim().parse::<i64>().map_err(|_| {
                        query_error(field.name(), format!("must be an integer, got {v:?}"))
                    })
                };
                if operator == Operator::Eq && raw.contains(',') {
                    Value::Integers(raw.split(',').map(parse).collect::<Result<_, _>>()?)
                } else {
                    Value::Integer(parse(raw)?)
                }
            }
            Kind::String => {
                if raw.contains('\0') {
                    return Err(query_error(
                        field.name(),
                        "must not contain NUL characters".to_owned(),
                    ));
                }
                Value::Text(raw.to_owned())
            }
        };
        Ok(Filter {
            field,
            operator,
            value,
        })
    }
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending (the default).
    Asc,
    /// Descending.
    Desc,
}

impl Direction {
    fn sql(self) -> &'static str {
        match self {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        }
    }

    /// `asc` or `desc`.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "asc" => Some(Direction::Asc),
            "desc" => Some(Direction::Desc),
            _ => None,
        }
    }
}

/// Parses `sort` values: comma-separated `FIELD[:asc|:desc]`.
pub fn parse_sort(values: &[String]) -> Result<Vec<(Field, Direction)>, QueryError> {
    let mut sort = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, direction) = match item.split_once(':') {
            Some((name, direction)) => (
                name,
                Direction::parse(direction).ok_or_else(|| {
                    query_error(
                        "sort",
                        format!("direction of {name:?} must be asc or desc, got {direction:?}"),
                    )
                })?,
            ),
            None => (item, Direction::Asc),
        };
        let field = Field::parse(name)
            .ok_or_else(|| query_error("sort", format!("unknown sort field {name:?}")))?;
        sort.push((field, direction));
    }
    Ok(sort)
}

/// Whose attachments a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All of the legal entity's.
    All,
    /// One patient's.
    Patient(i64),
    /// One patient case's.
    PatientCase(i64),
}

/// The largest page.
pub const MAX_PER_PAGE: i64 = 100;
/// The page size when none is asked for.
pub const DEFAULT_PER_PAGE: i64 = 50;
/// The most filters one request may combine.
pub const MAX_FILTERS: usize = 20;

/// A list request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// The caller's legal entity.
    pub legal_entity_id: Uuid,
    /// Whose.
    pub scope: Scope,
    /// ANDed.
    pub filters: Vec<Filter>,
    /// Sort keys; empty is `created_at` ascending.
    pub sort: Vec<(Field, Direction)>,
    /// From 1.
    pub page: i64,
    /// 1..=100.
    pub per_page: i64,
}

/// A page of attachments and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's rows.
    pub rows: Vec<PatientAttachmentRow>,
    /// Matching rows on every page.
    pub total_entries: i64,
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The statement's `WHERE` clause and its parameters.
fn where_clause(query: &ListQuery) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = vec![Box::new(query.legal_entity_id)];
    let mut conditions = vec!["legal_entity_id = $1".to_owned()];
    let bind = |params: &mut Vec<Param>, value: Param| {
        params.push(value);
        format!("${}", params.len())
    };
    match query.scope {
        Scope::All => {}
        Scope::Patient(id) => {
            let p = bind(&mut params, Box::new(id));
            conditions.push(format!("patient_id = {p}"));
        }
        Scope::PatientCase(id) => {
            let p = bind(&mut params, Box::new(id));
            conditions.push(format!("patient_case_id = {p}"));
        }
    }
    for filter in &query.filters {
        let column = filter.field.column();
        let condition = match (&filter.value, filter.operator) {
            (Value::Integers(values), _) => {
                let p = bind(&mut params, Box::new(values.clone()));
                format!("{column} = ANY({p})")
            }
            (Value::Text(text), Operator::Contains) => {
                let escaped = text
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                let p = bind(&mut params, Box::new(format!("%{escaped}%")));
                format!("{column} ILIKE {p}")
            }
            (Value::Text(text), Operator::Like) => {
                let p = bind(&mut params, Box::new(text.clone()));
                format!("{column} ILIKE {p}")
            }
            (Value::Time(time), operator) => {
                let p = bind(&mut params, Box::new(*time));
                compare(column, operator, &p)
            }
            (Value::Integer(number), operator) => {
                let p = bind(&mut params, Box::new(*number));
                compare(column, operator, &p)
            }
            (Value::Text(text), operator) => {
                let p = bind(&mut params, Box::new(text.clone()));
                compare(column, operator, &p)
            }
        };
        conditions.push(condition);
    }
    if !query.filters.iter().any(|f| f.field == Field::ArchivedAt) {
        conditions.push("archived_at IS NULL".to_owned());
    }
    (conditions.join(" AND "), params)
}

/// `column OP $n`; `!=` also matches NULL (an attachment with no description is not "= x").
fn compare(column: &str, operator: Operator, param: &str) -> String {
    match operator {
        Operator::Ne => format!("{column} IS DISTINCT FROM {param}"),
        other => format!("{column} {} {param}", other.token()),
    }
}

/// `ORDER BY` of the query: its sort keys, then `id` in the first key's direction (a total order, and the
/// indexes' order).
fn order_clause(query: &ListQuery) -> String {
    let sort = if query.sort.is_empty() {
        vec![(Field::CreatedAt, Direction::Asc)]
    } else {
        query.sort.clone()
    };
    let tie = sort.first().map_or(Direction::Asc, |(_, d)| *d);
    let mut keys: Vec<String> = sort
        .iter()
        .filter(|(field, _)| *field != Field::Id)
        .map(|(field, direction)| format!("{} {}", field.column(), direction.sql()))
        .collect();
    let id_direction = sort
        .iter()
        .find(|(field, _)| *field == Field::Id)
        .map_or(tie, |(_, d)| *d);
    keys.push(format!("id {}", id_direction.sql()));
    keys.join(", ")
}

/// The page statement and the count statement with their parameters (for tests and `EXPLAIN`).
pub fn statements(query: &ListQuery) -> (String, String, Vec<Param>) {
    let (conditions, params) = where_clause(query);
    let n = params.len();
    let page = format!(
        "SELECT {COLUMNS} FROM patient_attachments WHERE {conditions} ORDER BY {} LIMIT ${} OFFSET ${}",
        order_clause(query),
        n + 1,
        n + 2
    );
    let count = format!("SELECT count(*) FROM patient_attachments WHERE {conditions}");
    (page, count, params)
}

/// One page of the caller's attachments and the number that match.
pub async fn list(client: &impl GenericClient, query: &ListQuery) -> Result<Page, StoreError> {
    let (page_sql, count_sql, mut params) = statements(query);
    let count_params: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let total_entries: i64 = client.query_one(&count_sql, &count_params).await?.get(0);
    params.push(Box::new(query.per_page));
    params.push(Box::new((query.page - 1).saturating_mul(query.per_page)));
    let page_params: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&page_sql, &page_params).await?;
    Ok(Page {
        rows: rows.iter().map(PatientAttachmentRow::from_row).collect(),
        total_entries,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn query(filters: &[&str], sort: &[&str]) -> ListQuery {
        ListQuery {
            legal_entity_id: Uuid::nil(),
            scope: Scope::Patient(7),
            filters: filters.iter().map(|f| Filter::parse(f).unwrap()).collect(),
            sort: parse_sort(&sort.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap(),
            page: 1,
            per_page: 50,
        }
    }

    #[test]
    fn filters_parse_by_field_type() {
        let f = Filter::parse("created_at:>=2014-03-04T20:37:17Z").unwrap();
        assert_eq!((f.field, f.operator), (Field::CreatedAt, Operator::Ge));
        let f = Filter::parse("id:=1,2,3").unwrap();
        assert_eq!(f.value, Value::Integers(vec![1, 2, 3]));
        let f = Filter::parse("filename:~~%scan%").unwrap();
        assert_eq!(
            (f.operator, f.value),
            (Operator::Like, Value::Text("%scan%".to_owned()))
        );
        let f = Filter::parse("description:=a:b").unwrap();
        assert_eq!(f.value, Value::Text("a:b".to_owned()));
    }

    #[test]
    fn unknown_fields_and_operators_are_named() {
        let e = Filter::parse("colour:=red").unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        let e = Filter::parse("created_at:=2014-03-04T20:37:17Z").unwrap_err();
        assert_eq!(e.parameter, "created_at");
        assert!(e.message.contains("\"=\""), "{e}");
        assert_eq!(Filter::parse("size:~1").unwrap_err().parameter, "size");
        assert_eq!(
            Filter::parse("filename:>a").unwrap_err().parameter,
            "filename"
        );
        assert_eq!(Filter::parse("size:=x").unwrap_err().parameter, "size");
        assert_eq!(Filter::parse("size:>1,2").unwrap_err().parameter, "size");
        assert_eq!(Filter::parse("nocolon").unwrap_err().parameter, "q");
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let q = query(
            &["filename:=x'; DROP TABLE events; --", "description:~%_"],
            &[],
        );
        let (page, count, params) = statements(&q);
        assert!(!page.contains("DROP"), "{page}");
        assert!(!count.contains("DROP"), "{count}");
        assert_eq!(params.len(), 4);
        assert!(page.contains("filename = $3"), "{page}");
        assert!(page.contains("description ILIKE $4"), "{page}");
    }

    #[test]
    fn archived_ones_are_hidden_unless_filtered_on() {
        let (page, _, _) = statements(&query(&[], &[]));
        assert!(page.contains("archived_at IS NULL"), "{page}");
        let (page, _, _) = statements(&query(&["archived_at:>2000-01-01T00:00:00Z"], &[]));
        assert!(!page.contains("archived_at IS NULL"), "{page}");
    }

    #[test]
    fn sort_keys_end_with_id() {
        let (page, _, _) = statements(&query(&[], &["created_at:desc,filename"]));
        assert!(
            page.contains("ORDER BY created_at DESC, filename ASC, id DESC"),
            "{page}"
        );
        let (page, _, _) = statements(&query(&[], &[]));
        assert!(page.contains("ORDER BY created_at ASC, id ASC"), "{page}");
        let (page, _, _) = statements(&query(&[], &["user_id:desc"]));
        assert!(
            page.contains("ORDER BY user_number DESC, id DESC"),
            "{page}"
        );
        assert!(parse_sort(&["nope".to_owned()]).is_err());
        assert!(parse_sort(&["id:up".to_owned()]).is_err());
    }
}
