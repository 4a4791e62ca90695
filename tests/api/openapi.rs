//! `/api/openapi.json` describes the JSON API from the code; real responses validate against it
//! (jsonschema, draft 2020-12 as OpenAPI 3.1 uses it).

use serde_json::{Value, json};

use crate::helpers::{TOKEN, TestApp, kuma};

/// The response schema the document gives for (path, method, status), with the components beside it so
/// that its `$ref`s resolve.
fn response_schema(doc: &Value, path: &str, method: &str, status: &str) -> Value {
    let schema = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    let mut with_components = schema.clone();
    with_components["components"] = doc["components"].clone();
    with_components
}

pub fn assert_valid(doc: &Value, path: &str, method: &str, status: &str, body: &Value) {
    let schema = response_schema(doc, path, method, status);
    let validator = jsonschema::validator_for(&schema).expect("the document's schema compiles");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {path} {status}: {errors:#?}\n{body:#}");
}

#[tokio::test]
async fn real_responses_match_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/hooks/uptime-kuma",
        "/hooks/alertmanager",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/gate/check",
        "/api/v1/dry-run",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is described");
    }

    // A webhook, then the incident it opened (escalated with a timeline: no inventory here).
    let r = app.send_capture(&kuma("down_json.http")).await;
    assert_eq!(r.status, 202);
    assert_valid(&doc, "/hooks/uptime-kuma", "post", "202", &r.json());
    let id = r.json()["incident_id"].as_str().unwrap().to_string();
    let incident = app.wait_incident(&id, 20, |i| !i["waiting_for"].is_null()).await;
    assert_valid(&doc, "/api/v1/incidents/{id}", "get", "200", &incident);
    let list: Value =
        app.client.get(app.url("/api/v1/incidents")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_valid(&doc, "/api/v1/incidents", "get", "200", &list);
    let missing = app.client.get(app.url("/api/v1/incidents/01a22e5e-7394-7169-a27f-a36ad1cba412")).bearer_auth(TOKEN);
    let missing: Value = missing.send().await.unwrap().json().await.unwrap();
    assert_valid(&doc, "/api/v1/incidents/{id}", "get", "404", &missing);

    let api = app.client.post(app.url("/api/v1/incidents")).bearer_auth(TOKEN).json(&json!({"service_name": "db"}));
    let api: Value = api.send().await.unwrap().json().await.unwrap();
    assert_valid(&doc, "/api/v1/incidents", "post", "202", &api);
    let am = json!({"version": "4", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "A", "service": "nginx"}, "startsAt": "2026-11-22T03:35:13Z", "fingerprint": "f1"}]});
    let am: Value = app
        .client
        .post(app.url("/hooks/alertmanager"))
        .bearer_auth(TOKEN)
        .json(&am)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_valid(&doc, "/hooks/alertmanager", "post", "202", &am);

    for command in ["systemctl restart nginx", "rm -rf /", "/usr/local/lib/medic/clean_logs.sh nginx"] {
        let r = app.client.post(app.url("/api/v1/gate/check")).bearer_auth(TOKEN).json(&json!({"command": command}));
        let verdict: Value = r.send().await.unwrap().json().await.unwrap();
        assert_valid(&doc, "/api/v1/gate/check", "post", "200", &verdict);
    }
    let state: Value =
        app.client.get(app.url("/api/v1/dry-run")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_valid(&doc, "/api/v1/dry-run", "get", "200", &state);
    let set = app.client.put(app.url("/api/v1/dry-run")).bearer_auth(TOKEN).json(&json!({"enabled": true}));
    let set: Value = set.send().await.unwrap().json().await.unwrap();
    assert_valid(&doc, "/api/v1/dry-run", "put", "200", &set);

    // The validation can fail: a verdict missing its argv does not match.
    let schema = response_schema(&doc, "/api/v1/gate/check", "post", "200");
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(!validator.is_valid(&json!({"verdict": "allow", "reason": "r", "template": null})));
    app.stop().await;
}
