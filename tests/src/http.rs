//! HTTP helpers that read like the API: `app.api(&token).release(id).await.poll_job().await`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::TestApp;

/// An HTTP client acting with one bearer token.
pub struct Api<'a> {
    app: &'a TestApp,
    token: String,
    client: reqwest::Client,
    api_key: Option<String>,
}

/// A response: status, headers and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `error.message`.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// The job href of a 202.
    pub fn job_href(&self) -> String {
        self.body["data"]["links"][0]["href"]
            .as_str()
            .unwrap_or_else(|| panic!("no job link in {self:?}"))
            .to_owned()
    }

    /// Asserts the status and the error message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.message(), message, "{self:?}");
    }
}

/// A finished job as `GET /Jobs/{id}` shows it.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The HTTP status of the poll (303 for processed with a resource, 200 otherwise).
    pub http_status: StatusCode,
    /// `data` of the job.
    pub data: Value,
    /// `Location` on a 303.
    pub location: Option<String>,
}

impl JobResult {
    /// `data.status`.
    pub fn status(&self) -> &str {
        self.data["status"].as_str().unwrap_or_default()
    }

    /// `data.status_code`.
    pub fn status_code(&self) -> u64 {
        self.data["status_code"].as_u64().unwrap_or_default()
    }

    /// Asserts the job failed with this code and message.
    #[track_caller]
    pub fn assert_failed(&self, status_code: u64, message: &str) {
        assert_eq!(self.status(), "failed", "{self:?}");
        assert_eq!(self.status_code(), status_code, "{self:?}");
        assert_eq!(self.data["error"]["message"], message, "{self:?}");
    }

    /// Asserts the job was processed and returns the resource id from its link.
    #[track_caller]
    pub fn assert_processed(&self) -> Uuid {
        assert_eq!(self.status(), "processed", "{self:?}");
        assert_eq!(self.http_status, StatusCode::SEE_OTHER, "{self:?}");
        let href = self.location.clone().unwrap_or_default();
        href.rsplit('/')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no resource in {self:?}"))
    }
}

/// The body of a use command in the eHealth reference shape.
pub fn use_body(legal_entity_id: Uuid, employee_id: Option<Uuid>) -> Value {
    let reference = |code: &str, id: Uuid| json!({"identifier": {"type": {"coding": [{"system": "eHealth/resources", "code": code}]}, "value": id}});
    let mut body = json!({ "used_by_legal_entity": reference("legal_entity", legal_entity_id) });
    if let Some(employee_id) = employee_id {
        body["used_by_employee"] = reference("employee", employee_id);
    }
    body
}

impl<'a> Api<'a> {
    pub(crate) fn new(app: &'a TestApp, token: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            app,
            token: token.to_owned(),
            client,
            api_key: Some(app.api_key.clone()),
        }
    }

    /// Sends requests without the `api-key` header.
    pub fn without_api_key(mut self) -> Self {
        self.api_key = None;
        self
    }

    /// Sends requests with this `api-key`.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    /// Any request; `body` is sent as JSON when given; `headers` are added.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.app.address))
            .bearer_auth(&self.token);
        if let Some(key) = &self.api_key {
            request = request.header("api-key", key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None, &[]).await
    }

    /// Sends a create of a service request coded `code` for a new patient and returns its job's href
    /// (asserting 202).
    pub async fn create_coded(&self, code: &str) -> String {
        let reply = self
            .request(
                Method::POST,
                &format!("/api/patients/{}/service_requests", Uuid::new_v4()),
                Some(json!({ "category": "laboratory_procedure", "code": code })),
                &[],
            )
            .await;
        assert_eq!(reply.status, 202, "{reply:?}");
        reply.job_href()
    }

    pub async fn create_service_request(&self, patient_id: Uuid, program: bool) -> Reply {
        let body = json!({
            "category": "laboratory_procedure",
            "code": "LAB-001",
            "program_id": if program { Some(Uuid::new_v4()) } else { None },
            "expiration_date": null,
        });
        self.request(
            Method::POST,
            &format!("/api/patients/{patient_id}/service_requests"),
            Some(body),
            &[],
        )
        .await
    }

    pub async fn use_request(
        &self,
        id: Uuid,
        legal_entity_id: Uuid,
        employee_id: Option<Uuid>,
    ) -> Reply {
        let path = format!("/api/service_requests/{id}/actions/use");
        self.request(
            Method::PATCH,
            &path,
            Some(use_body(legal_entity_id, employee_id)),
            &[],
        )
        .await
    }

    pub async fn action(&self, id: Uuid, action: &str) -> Reply {
        self.request(
            Method::PATCH,
            &format!("/api/service_requests/{id}/actions/{action}"),
            None,
            &[],
        )
        .await
    }

    pub async fn release(&self, id: Uuid) -> Reply {
        self.action(id, "release").await
    }

    /// Polls a job until it is no longer pending (at most 20 s).
    pub async fn poll_job(&self, href: &str) -> JobResult {
        for _ in 0..400 {
            let reply = self.get(href).await;
            assert!(
                reply.status == StatusCode::OK || reply.status == StatusCode::SEE_OTHER,
                "polling {href}: {reply:?}"
            );
            if reply.body["data"]["status"] != "pending" {
                let location = reply
                    .headers
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_owned());
                return JobResult {
                    http_status: reply.status,
                    data: reply.body["data"].clone(),
                    location,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {href} still pending after 20 s");
    }

    /// Submits and waits: asserts 202 and returns the finished job.
    pub async fn finished(&self, reply: Reply) -> JobResult {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        self.poll_job(&reply.job_href()).await
    }

    /// Creates a service request and returns its id.
    pub async fn created_service_request(&self, patient_id: Uuid, program: bool) -> Uuid {
        let reply = self.create_service_request(patient_id, program).await;
        self.finished(reply).await.assert_processed()
    }
}
