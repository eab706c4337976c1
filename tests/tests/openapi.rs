//! The OpenAPI description (`GET /openapi.json`, `GET /docs`): it lists exactly the routes the api serves,
//! it is OpenAPI 3.1 with both security schemes, and every answer it names has a body schema.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use ehealth_tests::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

/// The methods of an OpenAPI path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(METHOD, path)` of every operation of the document.
fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// `(METHOD, path)` of every route of an axum router, read from its `Debug` form (axum offers no other way
/// to list routes): the path router's `RouteId(n): "path"` entries and each route's `allow_header`, the
/// methods it answers. `HEAD` comes with every `GET` and is left out. A route that is a plain service (no
/// method router) is listed with the method `ANY`.
fn served_routes(router_debug: &str) -> BTreeSet<(String, String)> {
    // Only the path router: the fallback router holds axum's own catch-all paths.
    let paths_part = router_debug
        .split_once(", fallback_router:")
        .map_or(router_debug, |(before, _)| before);
    let (routes_part, node_part) = paths_part
        .split_once("node: Node")
        .expect("the router's Debug form has changed: no `node: Node`");
    let mut paths = std::collections::BTreeMap::new();
    for entry in node_part.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once(')').expect("RouteId(n)");
        let path = rest
            .trim_start_matches(": ")
            .trim_start_matches('"')
            .split('"')
            .next()
            .expect("a quoted path");
        paths.insert(id.to_owned(), path.to_owned());
    }
    let mut routes = BTreeSet::new();
    for entry in routes_part.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once(')').expect("RouteId(n)");
        let path = paths.get(id).expect("every route has a path").clone();
        let methods = rest
            .split_once("allow_header: Bytes(b\"")
            .and_then(|(_, allow)| allow.split('"').next());
        match methods {
            Some(methods) => {
                for method in methods.split(',').filter(|m| *m != "HEAD") {
                    routes.insert((method.to_owned(), path.clone()));
                }
            }
            None => {
                routes.insert(("ANY".to_owned(), path));
            }
        }
    }
    routes
}

async fn document(app: &TestApp) -> Value {
    let reply = reqwest::get(format!("{}/openapi.json", app.address))
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.headers()["content-type"], "application/json");
    reply.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_router_has_exactly_the_routes_of_the_openapi_document() {
    let app = TestApp::spawn_without_worker().await;
    let document = document(&app).await;
    // The router exactly as `ehealth-api` serves it, layers included.
    let application = ehealth_api::Application::build(app.config.clone())
        .await
        .unwrap();
    let served = served_routes(&format!("{:?}", application.router()));
    let documented = documented_routes(&document);

    assert!(
        served.contains(&("GET".to_owned(), "/health".to_owned()))
            && served.contains(&(
                "PATCH".to_owned(),
                "/api/service_requests/{id}/actions/release".to_owned()
            )),
        "the router's routes could not be read from its Debug form: {served:?}"
    );
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes the OpenAPI document lacks (add them with `.routes(routes!(handler))` and a \
         `#[utoipa::path]`): {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "documented routes the api does not serve: {unserved:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_route_is_documented() {
    let app = TestApp::spawn_without_worker().await;
    let documented = documented_routes(&document(&app).await);
    let files = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files";
    for (method, path) in [
        (
            "POST",
            "/api/patients/{patient_id}/service_requests".to_owned(),
        ),
        (
            "GET",
            "/api/patients/{patient_id}/service_requests".to_owned(),
        ),
        ("PATCH", "/api/service_requests/{id}/actions/use".to_owned()),
        (
            "PATCH",
            "/api/service_requests/{id}/actions/release".to_owned(),
        ),
        (
            "PATCH",
            "/api/service_requests/{id}/actions/process".to_owned(),
        ),
        (
            "PATCH",
            "/api/service_requests/{id}/actions/complete".to_owned(),
        ),
        (
            "PATCH",
            "/api/patients/{patient_id}/service_requests/{id}/actions/recall".to_owned(),
        ),
        (
            "PATCH",
            "/api/patients/{patient_id}/service_requests/{id}/actions/cancel".to_owned(),
        ),
        ("GET", "/api/service_requests/{id}".to_owned()),
        ("GET", "/Jobs/{id}".to_owned()),
        ("GET", "/api/jobs/{id}".to_owned()),
        ("GET", "/api/audit/streams/{id}".to_owned()),
        ("GET", "/api/audit/events".to_owned()),
        ("POST", format!("{files}/initialize/{{fileName}}")),
        ("POST", format!("{files}/{{file}}")),
        ("GET", files.to_owned()),
        ("GET", format!("{files}/{{file}}")),
        ("PATCH", format!("{files}/{{file}}")),
        ("DELETE", format!("{files}/{{file}}")),
        ("GET", "/health".to_owned()),
        ("GET", "/openapi.json".to_owned()),
        ("GET", "/docs".to_owned()),
    ] {
        assert!(
            documented.contains(&(method.to_owned(), path.clone())),
            "{method} {path} is not documented"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_with_both_security_schemes_and_ehealth_shaped_answers() {
    let app = TestApp::spawn_without_worker().await;
    let document = document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "api-key");
    assert_eq!(schemes["basic"]["type"], "http");
    assert_eq!(schemes["basic"]["scheme"], "basic");

    let schemas = &document["components"]["schemas"];
    for name in [
        "CreateServiceRequest",
        "UseServiceRequest",
        "StatusReason",
        "SetSend",
        "Reference",
        "Coding",
    ] {
        assert!(
            !schemas[name]["examples"].is_null() || !schemas[name]["example"].is_null(),
            "{name} has no example: {}",
            schemas[name]
        );
    }
    assert_eq!(
        schemas["ErrorResponse"]["required"],
        serde_json::json!(["meta", "error"])
    );

    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let name = format!("{method} {path}");
            // Spec 002 speaks Cliniko: Basic or bearer, Cliniko's error shapes, 204 and 302 without a body.
            let cliniko = path.starts_with("/v1/");
            let public = ["/health", "/openapi.json", "/docs", "/metrics"]
                .iter()
                .any(|p| path == p || path.starts_with("/health/"));
            let security = operation["security"].as_array();
            if public {
                assert!(
                    security.is_none_or(|s| s.is_empty()),
                    "{name} needs no credentials"
                );
            } else {
                let security = security.unwrap_or_else(|| panic!("{name} has no security"));
                if cliniko {
                    assert!(security[0].get("basic").is_some(), "{name}: {security:?}");
                    assert!(security[1].get("bearer").is_some(), "{name}: {security:?}");
                } else {
                    assert!(security[0].get("bearer").is_some(), "{name}: {security:?}");
                }
                if path.starts_with("/api/") && path.contains("service_requests") {
                    assert!(security[0].get("api_key").is_some(), "{name}: {security:?}");
                }
                for status in ["401", "403", "500", "503"] {
                    assert!(
                        operation["responses"].get(status).is_some(),
                        "{name} does not document {status}"
                    );
                }
            }
            if path.contains('{') {
                assert!(
                    operation["parameters"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["in"] == "path")),
                    "{name} does not document its path parameters"
                );
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let code: u16 = status.parse().unwrap();
                if code >= 400 && cliniko {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert!(
                        schema == "#/components/schemas/ClinikoMessage"
                            || schema == "#/components/schemas/ClinikoValidation",
                        "{name} {status} is not in a Cliniko error shape"
                    );
                } else if code >= 400 {
                    if !public {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorResponse",
                            "{name} {status} is not in the eHealth error shape"
                        );
                    }
                } else if code != 304 && !(cliniko && (code == 204 || code == 302)) {
                    assert!(
                        response.get("content").is_some(),
                        "{name} {status} has no body"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_the_document() {
    let app = TestApp::spawn_without_worker().await;
    let reply = reqwest::get(format!("{}/docs", app.address)).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = reply.text().await.unwrap();
    assert!(page.contains("<title>eHealth Jobs API</title>"), "{page}");
    assert!(page.contains(r#"id="api-reference""#));
    assert!(page.contains(r#""openapi":"3.1.0""#));
}
