//! The n8n workflows under `workflows/`, checked without n8n (which these tests do not run yet): they
//! parse, use only core nodes, connect only nodes that exist, carry no secret (credentials by
//! reference), and every medic endpoint they call is one medic's OpenAPI document describes.

use serde_json::Value;

use crate::helpers::TestApp;

const CORE: [&str; 6] = [
    "n8n-nodes-base.webhook",
    "n8n-nodes-base.httpRequest",
    "n8n-nodes-base.if",
    "n8n-nodes-base.switch",
    "n8n-nodes-base.wait",
    "n8n-nodes-base.code",
];

#[tokio::test]
async fn the_workflows_use_core_nodes_reference_credentials_and_call_described_endpoints() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        assert!(!text.contains(crate::helpers::TOKEN) && !text.contains("Bearer "), "{name}: no secret inside");
        let wf: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(wf["id"].is_string() && wf["name"].is_string(), "{name}: id and name for n8n import:workflow");
        let nodes = wf["nodes"].as_array().unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
        for node in nodes {
            let kind = node["type"].as_str().unwrap();
            assert!(CORE.contains(&kind), "{name}: {kind} is not a core node");
            let url = node["parameters"]["url"].as_str().unwrap_or("");
            if kind == "n8n-nodes-base.httpRequest" && url.contains("MEDIC_URL") {
                assert_eq!(node["credentials"]["httpHeaderAuth"]["name"], "medic API token", "{name}: by reference");
                let path = url.split_once("}}").map(|(_, rest)| rest).unwrap_or(url);
                // "/api/v1/incidents/{{ … }}/execute" → the documented "/api/v1/incidents/{id}/execute".
                let documented = regex_like(path);
                assert!(
                    doc["paths"][&documented]["post"].is_object(),
                    "{name}: POST {documented} is not in the OpenAPI document"
                );
            }
        }
        for (source, outputs) in wf["connections"].as_object().unwrap() {
            assert!(names.contains(&source.as_str()), "{name}: connection from unknown node {source}");
            for target in outputs["main"].as_array().unwrap().iter().flat_map(|o| o.as_array().unwrap()) {
                let t = target["node"].as_str().unwrap();
                assert!(names.contains(&t), "{name}: connection to unknown node {t}");
            }
        }
    }
    assert_eq!(files, 3, "Main_Supervisor, Action_Executor, Notification_Manager");
    app.stop().await;
}

#[test]
fn expressions_in_paths_become_the_documented_parameter() {
    assert_eq!(regex_like("/api/v1/incidents/{{ $json.id }}/execute"), "/api/v1/incidents/{id}/execute");
    assert_eq!(regex_like("/hooks/uptime-kuma"), "/hooks/uptime-kuma");
}

/// Replaces each `{{ … }}` expression in a path with `{id}`.
fn regex_like(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        out.push_str("{id}");
        rest = rest[start..].split_once("}}").map(|(_, r)| r).unwrap_or("");
    }
    out.push_str(rest);
    out
}
