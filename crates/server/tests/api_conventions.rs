//! Kubernetes API conventions: optimistic concurrency, list parameters, watch streams
//! without gaps or duplicates, 410 for compacted revisions, patches, YAML bodies.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{IMAGE_API, TestApp, stream_body, watch_events};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn a_stale_resource_version_gets_409_and_changes_nothing() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let path = format!("{IMAGE_API}/namespaces/team/imagestreams");
    let (_, created) = app.post(&path, stream_body("app", json!([]))).await;
    let mut first = created.clone();
    first["metadata"]["labels"] = json!({"v": "1"});
    let (status, _) = app.put(&format!("{path}/app"), first).await;
    assert_eq!(status, StatusCode::OK);
    let mut stale = created.clone();
    stale["metadata"]["labels"] = json!({"v": "stale"});
    let (status, error) = app.put(&format!("{path}/app"), stale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!((error["kind"].as_str(), error["reason"].as_str(), error["code"].as_i64()), (Some("Status"), Some("Conflict"), Some(409)));
    assert!(error["message"].as_str().unwrap().contains("the object has been modified"));
    assert_eq!(app.stream("team", "app").await["metadata"]["labels"]["v"], "1");
    app.stop().await;
}

#[tokio::test]
async fn lists_take_selectors_limits_and_continue_tokens() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let path = format!("{IMAGE_API}/namespaces/team/imagestreams");
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "web"), ("e", "db")] {
        let mut body = stream_body(name, json!([]));
        body["metadata"]["labels"] = json!({"tier": tier});
        assert_eq!(app.post(&path, body).await.0, StatusCode::CREATED);
    }
    let names = |list: &Value| {
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let (_, web) = app.get(&format!("{path}?labelSelector=tier%3Dweb")).await;
    assert_eq!(names(&web), ["a", "c", "d"]);
    assert_eq!(web["kind"], "ImageStreamList");
    let (_, not_web) = app.get(&format!("{path}?labelSelector=tier%20notin%20(web)")).await;
    assert_eq!(names(&not_web), ["b", "e"]);
    let (_, by_name) = app.get(&format!("{path}?fieldSelector=metadata.name%3Dc")).await;
    assert_eq!(names(&by_name), ["c"]);

    let mut seen = Vec::new();
    let mut url = format!("{path}?limit=2");
    loop {
        let (status, page) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(token) => url = format!("{path}?limit=2&continue={token}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let (status, error) = app.get(&format!("{path}?continue=garbage")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = app.get(&format!("{path}?labelSelector=tier%20in%20web")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// Reads watch lines until `want` events arrived or the stream ends.
async fn read_events(response: reqwest::Response, want: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    let mut stream = response.bytes_stream();
    while events.len() < want {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await else {
            break;
        };
        buffer.extend_from_slice(&chunk.unwrap());
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            events.push(serde_json::from_slice(&line).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn watch_streams_every_change_once_in_order_under_concurrent_writers() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let start = app.revision().await;
    let watch_url = format!("{}{IMAGE_API}/namespaces/team/imagestreams?watch=true&resourceVersion={start}", app.base);
    let response = reqwest::Client::new().get(&watch_url).bearer_auth(&app.admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    const WRITERS: usize = 8;
    const ROUNDS: usize = 25;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (base, token) = (app.base.clone(), app.admin.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let url = format!("{base}{IMAGE_API}/namespaces/team/imagestreams");
                let create =
                    client.post(&url).bearer_auth(&token).json(&stream_body(&format!("s{writer}"), json!([]))).send().await.unwrap();
                assert_eq!(create.status(), StatusCode::CREATED);
                for round in 0..ROUNDS {
                    let patch = json!({"metadata": {"labels": {"round": round.to_string()}}});
                    let response = client
                        .patch(format!("{url}/s{writer}"))
                        .bearer_auth(&token)
                        .header("content-type", "application/merge-patch+json")
                        .body(patch.to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = WRITERS * (ROUNDS + 1);
    let events = read_events(response, expected).await;
    assert_eq!(events.len(), expected, "every change arrives");
    let revisions: Vec<u64> =
        events.iter().map(|e| e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "in revision order, no duplicates");
    assert_eq!(*revisions.last().unwrap(), app.revision().await, "nothing is missing at the end");
    let mut per_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &events {
        let name = event["object"]["metadata"]["name"].as_str().unwrap().to_string();
        per_stream.entry(name).or_default().push(event["type"].as_str().unwrap().to_string());
    }
    for (name, types) in per_stream {
        assert_eq!(types[0], "ADDED", "{name}");
        assert_eq!(types.len(), ROUNDS + 1, "{name}");
        assert!(types[1..].iter().all(|t| t == "MODIFIED"), "{name}");
    }
    app.stop().await;
}

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> (String, String) {
    let event = tokio::time::timeout(Duration::from_secs(20), events.recv()).await.expect("an event arrives").expect("the watch is open");
    (event["type"].as_str().unwrap().to_string(), event["object"]["metadata"]["name"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn watch_without_a_revision_starts_with_the_current_objects_and_sees_deletes() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let path = format!("{IMAGE_API}/namespaces/team/imagestreams");
    app.post(&path, stream_body("old", json!([]))).await;
    let response = reqwest::Client::new().get(format!("{}{path}?watch=1", app.base)).bearer_auth(&app.admin).send().await.unwrap();
    let mut events = watch_events(response);
    assert_eq!(next_event(&mut events).await, ("ADDED".to_string(), "old".to_string()));
    app.post(&path, stream_body("new", json!([]))).await;
    app.delete(&format!("{path}/old")).await;
    assert_eq!(next_event(&mut events).await, ("ADDED".to_string(), "new".to_string()));
    assert_eq!(next_event(&mut events).await, ("DELETED".to_string(), "old".to_string()));
    app.stop().await;
}

#[tokio::test]
async fn a_compacted_revision_gets_410_gone() {
    let app = TestApp::start_with(|c| {
        c.event_retention = 5;
        c.compaction_interval = Duration::from_millis(50);
    })
    .await;
    app.namespace("team").await;
    let path = format!("{IMAGE_API}/namespaces/team/imagestreams");
    for idx in 0..20 {
        app.post(&path, stream_body(&format!("s{idx}"), json!([]))).await;
    }
    // Compaction runs in the background: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (status, error) = loop {
        let (status, error) = app.get(&format!("{path}?watch=true&resourceVersion=2&timeoutSeconds=1")).await;
        if status == StatusCode::GONE || tokio::time::Instant::now() > deadline {
            break (status, error);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, StatusCode::GONE, "{error}");
    assert_eq!(error["reason"], "Expired");
    assert!(error["message"].as_str().unwrap().contains("too old resource version: 2"));
    // A recent revision is still served.
    let recent = app.revision().await - 2;
    let response = reqwest::Client::new()
        .get(format!("{}{path}?watch=true&resourceVersion={recent}", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_events(response, 2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn patches_and_yaml_bodies() {
    let app = TestApp::start().await;
    app.namespace("team").await;
    let path = format!("{IMAGE_API}/namespaces/team/imagestreams");
    let yaml = "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: ruby\n  annotations:\n    openshift.io/display-name: Ruby\nspec:\n  lookupPolicy:\n    local: true\n  tags:\n  - name: \"2.7\"\n    annotations:\n      description: Ruby 2.7\n    from:\n      kind: DockerImage\n      name: registry.example.com/ruby:2.7\n    referencePolicy:\n      type: Local\n    importPolicy:\n      scheduled: true\n";
    let (status, created) = app.send_raw(&app.admin, Method::POST, &path, "application/yaml", yaml.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["lookupPolicy"]["local"], true);
    assert_eq!(created["spec"]["tags"][0]["referencePolicy"]["type"], "Local");
    assert_eq!(created["spec"]["tags"][0]["importPolicy"]["scheduled"], true);

    let patch = json!({"spec": {"tags": [{"name": "3.0", "from": {"kind": "DockerImage", "name": "registry.example.com/ruby:3.0"}}]}});
    let (status, patched) = app
        .send_raw(
            &app.admin,
            Method::PATCH,
            &format!("{path}/ruby"),
            "application/strategic-merge-patch+json",
            patch.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let tags: Vec<&str> = patched["spec"]["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tags, ["2.7", "3.0"], "a strategic merge keeps the other tags");
    assert_eq!(patched["metadata"]["generation"], 2);

    let (status, yaml_back) = {
        let response = reqwest::Client::new()
            .get(format!("{}{path}/ruby", app.base))
            .bearer_auth(&app.admin)
            .header("accept", "application/yaml")
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    assert!(yaml_back.contains("kind: ImageStream"), "{yaml_back}");
    // Lists in YAML are streamed item by item too, and read back as the same list.
    let (base, admin) = (app.base.clone(), app.admin.clone());
    let yaml_list = |path: String| {
        let (base, admin) = (base.clone(), admin.clone());
        async move {
            let response = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(&admin).header("accept", "application/yaml");
            let response = response.send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "application/yaml");
            yaml_serde::from_str::<Value>(&response.text().await.unwrap()).unwrap()
        }
    };
    let listed = yaml_list(path.clone()).await;
    assert_eq!(listed["kind"], "ImageStreamList");
    assert_eq!(listed["items"][0]["spec"]["tags"][1]["name"], "3.0");
    assert_eq!(listed["items"][0]["metadata"]["annotations"]["openshift.io/display-name"], "Ruby");
    // (The importer may write the stream's status between the two reads: the specs match.)
    let (_, json_list) = app.get(&path).await;
    assert_eq!(listed["items"][0]["spec"], json_list["items"][0]["spec"], "the same items as JSON");
    app.namespace("empty").await;
    let empty = yaml_list(format!("{IMAGE_API}/namespaces/empty/imagestreams")).await;
    assert_eq!(empty["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn the_default_namespace_exists_from_the_first_start_and_stays() {
    let mut app = TestApp::start().await;
    let (status, default) = app.get("/api/v1/namespaces/default").await;
    assert_eq!((status, default["status"]["phase"].as_str()), (StatusCode::OK, Some("Active")), "{default}");
    let (status, refused) = app.delete("/api/v1/namespaces/default").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("may not be deleted"));
    // Streams go there without any set-up, and a restart keeps it as it is.
    let (status, _) = app.post(&format!("{IMAGE_API}/namespaces/default/imagestreams"), stream_body("app", json!([]))).await;
    assert_eq!(status, StatusCode::CREATED);
    app.restart().await;
    let (_, again) = app.get("/api/v1/namespaces/default").await;
    assert_eq!(again["metadata"]["uid"], default["metadata"]["uid"]);
    app.stop().await;
}
