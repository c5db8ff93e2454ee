//! End-to-end tests: the REST API, its error paths, auth, health, metrics and the OpenAPI
//! document, against a real server on port 0 with a temporary embedded store; CRUD and the
//! error paths also on MongoDB when `TEST_MONGODB_URI` is set.

use reqwest::Method;
use serde_json::{Value, json};
use tests::server::{Options, TestServer};

/// A method, a path and a JSON body.
type Request = (Method, String, Value);

fn id_of(record: &Value) -> String {
    record["_id"].as_str().expect("_id").to_owned()
}

#[tokio::test]
async fn create_read_update_delete() -> anyhow::Result<()> {
    create_read_update_delete_on(Options::default()).await
}

/// [`create_read_update_delete`] on a fresh MongoDB database (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn create_read_update_delete_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    create_read_update_delete_on(base).await
}

async fn create_read_update_delete_on(base: Options) -> anyhow::Result<()> {
    let s = TestServer::start(base).await?;
    let body = json!({"extension": "1001", "agent_name": " Alice ", "department": "Sales"});
    let r = s
        .request(Method::POST, "/api/extensions", Some(&body), None)
        .await?;
    assert_eq!(r.status, 201, "{}", r.text);
    let rec = r.json;
    let id = id_of(&rec);
    assert_eq!(id.len(), 24);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(rec["extension"], "1001");
    assert_eq!(rec["agent_name"], "Alice", "names are trimmed");
    assert_eq!(rec["department"], "Sales");
    assert_eq!(rec["status_code"], -1);
    assert_eq!(rec["device_state"], "UNKNOWN");
    assert_eq!(rec["status"], "unknown");
    assert_eq!(rec["last_status_change"], Value::Null);
    assert_eq!(rec["last_seen"], Value::Null);
    assert_eq!(rec["is_active"], true);
    assert_eq!(rec["createdAt"], rec["updatedAt"]);

    let got = s.get(&format!("/api/extensions/{id}")).await?;
    assert_eq!((got.status, &got.json), (200, &rec));

    s.create("1002", "Bob", "Support").await?;
    s.create("999", "Carol", "Sales").await?;
    let all = s.get("/api/extensions").await?;
    let numbers: Vec<&str> = all
        .json
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["extension"].as_str().expect("ext"))
        .collect();
    assert_eq!(
        numbers,
        ["999", "1001", "1002"],
        "ordered by extension number"
    );

    let rows = [
        ("?department=Sales", vec!["999", "1001"]),
        ("?department=Support", vec!["1002"]),
        (
            "?status=unknown&is_active=true",
            vec!["999", "1001", "1002"],
        ),
        ("?status=online", vec![]),
        ("?is_active=false", vec![]),
    ];
    for (query, want) in rows {
        let r = s.get(&format!("/api/extensions{query}")).await?;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        let got: Vec<&str> = r
            .json
            .as_array()
            .expect("array")
            .iter()
            .map(|e| e["extension"].as_str().expect("ext"))
            .collect();
        assert_eq!(got, want, "{query}");
    }

    let patch = json!({"agent_name": "Alice Smith", "department": "Support", "is_active": false});
    let r = s
        .request(
            Method::PUT,
            &format!("/api/extensions/{id}"),
            Some(&patch),
            None,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["agent_name"], "Alice Smith");
    assert_eq!(r.json["department"], "Support");
    assert_eq!(r.json["is_active"], false);
    assert_eq!(r.json["extension"], "1001");
    assert_eq!(r.json["createdAt"], rec["createdAt"]);
    let r = s.get("/api/extensions?is_active=false").await?;
    assert_eq!(r.json.as_array().map(Vec::len), Some(1));

    let r = s
        .request(Method::DELETE, &format!("/api/extensions/{id}"), None, None)
        .await?;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    let r = s.get(&format!("/api/extensions/{id}")).await?;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    s.stop().await
}

#[tokio::test]
async fn every_error_path_answers_json_and_changes_nothing() -> anyhow::Result<()> {
    every_error_path_answers_json_and_changes_nothing_on(Options::default()).await
}

/// [`every_error_path_answers_json_and_changes_nothing`] on a fresh MongoDB database (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn every_error_path_answers_json_and_changes_nothing_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    every_error_path_answers_json_and_changes_nothing_on(base).await
}

async fn every_error_path_answers_json_and_changes_nothing_on(base: Options) -> anyhow::Result<()> {
    let s = TestServer::start(base).await?;
    let rec = s.create("2001", "Dora", "Sales").await?;
    let id = id_of(&rec);
    let unknown_id = "0123456789abcdef01234567";
    let before = s.get("/api/extensions").await?.json;

    let post = |v: Value| (Method::POST, "/api/extensions".to_owned(), v);
    let put = |v: Value| (Method::PUT, format!("/api/extensions/{id}"), v);
    // (request, status, code, fields that must be named)
    let rows: Vec<(Request, u16, &str, Vec<&str>)> = vec![
        (
            post(json!({})),
            400,
            "validation_failed",
            vec!["extension", "agent_name", "department"],
        ),
        (
            post(json!({"extension": "1", "agent_name": "", "department": "x\u{7}"})),
            400,
            "validation_failed",
            vec!["extension", "agent_name", "department"],
        ),
        (
            post(json!({"extension": "20a1", "agent_name": "A", "department": "D"})),
            400,
            "validation_failed",
            vec!["extension"],
        ),
        (
            post(
                json!({"extension": "2002", "agent_name": "A", "department": "D", "is_active": "yes"}),
            ),
            400,
            "validation_failed",
            vec!["is_active"],
        ),
        (
            post(json!({
                "extension": "2002", "agent_name": "A", "department": "D",
                "status_code": 0, "device_state": "INUSE", "status": "online",
                "last_status_change": null, "last_seen": null, "_id": "x",
                "createdAt": "2020-01-01T00:00:00Z", "updatedAt": "2020-01-01T00:00:00Z"
            })),
            400,
            "validation_failed",
            vec![
                "status_code",
                "device_state",
                "status",
                "last_status_change",
                "last_seen",
                "_id",
                "createdAt",
                "updatedAt",
            ],
        ),
        (
            post(
                json!({"extension": "2002", "agent_name": "A", "department": "D", "colour": "red"}),
            ),
            400,
            "validation_failed",
            vec!["colour"],
        ),
        (
            post(json!({"extension": "2001", "agent_name": "Twin", "department": "Sales"})),
            409,
            "conflict",
            vec!["extension"],
        ),
        (post(json!([1, 2])), 400, "invalid_json", vec![]),
        (
            put(json!({"extension": "2003"})),
            400,
            "validation_failed",
            vec!["extension"],
        ),
        (
            put(json!({"status": "online", "agent_name": "Ok"})),
            400,
            "validation_failed",
            vec!["status"],
        ),
        (
            put(json!({"agent_name": "   "})),
            400,
            "validation_failed",
            vec!["agent_name"],
        ),
        (
            put(json!({"department": "d".repeat(51)})),
            400,
            "validation_failed",
            vec!["department"],
        ),
        (
            (
                Method::PUT,
                format!("/api/extensions/{unknown_id}"),
                json!({"agent_name": "X"}),
            ),
            404,
            "not_found",
            vec![],
        ),
        (
            (
                Method::PUT,
                "/api/extensions/not-an-id".to_owned(),
                json!({"agent_name": "X"}),
            ),
            404,
            "not_found",
            vec![],
        ),
    ];
    for ((method, path, body), status, code, fields) in rows {
        let r = s.request(method.clone(), &path, Some(&body), None).await?;
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.text);
        assert_eq!(r.error_code(), code, "{method} {path} {body}: {}", r.text);
        assert!(
            r.content_type.starts_with("application/json"),
            "{}",
            r.content_type
        );
        assert!(
            r.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            r.text
        );
        for f in fields {
            assert!(
                r.json["error"]["fields"][f].is_string(),
                "{method} {path}: field {f} not named in {}",
                r.text
            );
        }
    }

    // Bodies that are not JSON objects of at most 1 MiB.
    let ok_body = br#"{"extension":"2009","agent_name":"A","department":"D"}"#.to_vec();
    let big = {
        let mut v = br#"{"extension":"2009","agent_name":"A","department":""#.to_vec();
        v.extend(std::iter::repeat_n(b'x', 1024 * 1024));
        v.extend_from_slice(br#""}"#);
        v
    };
    let raw_rows: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (
            Some("text/plain"),
            ok_body.clone(),
            415,
            "unsupported_media_type",
        ),
        (None, ok_body.clone(), 415, "unsupported_media_type"),
        (
            Some("application/x-www-form-urlencoded"),
            b"a=b".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (Some("application/json"), big, 413, "payload_too_large"),
        (
            Some("application/json"),
            b"{\"extension\": ".to_vec(),
            400,
            "invalid_json",
        ),
        (
            Some("application/json"),
            b"{\"agent_name\": \"\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (Some("application/json"), Vec::new(), 400, "invalid_json"),
    ];
    for (ct, body, status, code) in raw_rows {
        let len = body.len();
        let r = s.raw(Method::POST, "/api/extensions", ct, body).await?;
        assert_eq!(
            (r.status, r.error_code()),
            (status, code),
            "{ct:?} {len} bytes: {}",
            r.text
        );
    }
    let r = s
        .raw(
            Method::PUT,
            &format!("/api/extensions/{id}"),
            Some("text/plain"),
            b"{}".to_vec(),
        )
        .await?;
    assert_eq!((r.status, r.error_code()), (415, "unsupported_media_type"));
    // A body is read as sent: one that says it is compressed is refused, whether it is or not
    // (it was taken as if the header were absent), and nothing is created.
    let labelled = reqwest::Client::new()
        .post(s.url("/api/extensions"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(br#"{"extension":"5558","agent_name":"A","department":"D"}"#.to_vec())
        .send()
        .await?;
    assert_eq!(labelled.status().as_u16(), 415);
    let text = labelled.text().await?;
    let v: Value = serde_json::from_str(&text)?;
    assert_eq!(v["error"]["code"], "unsupported_media_type", "{text}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Content-Encoding \"gzip\"")),
        "{text}"
    );
    let r = s.get("/api/extensions").await?;
    assert!(!r.text.contains("5558"), "{}", r.text);

    // A member given twice is ambiguous: refused and named, and nothing is created.
    let r = s
        .raw(
            Method::POST,
            "/api/extensions",
            Some("application/json"),
            br#"{"extension":"5556","agent_name":"A","department":"D","extension":"5557"}"#
                .to_vec(),
        )
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "invalid_json"),
        "{}",
        r.text
    );
    assert_eq!(
        r.json["error"]["fields"]["extension"], "is given more than once",
        "{}",
        r.text
    );
    for ext in ["5556", "5557"] {
        assert!(s.record(ext).await.is_err(), "{ext} must not exist");
    }

    // Unknown ids, routes, methods and filters.
    let r = s
        .request(
            Method::DELETE,
            &format!("/api/extensions/{unknown_id}"),
            None,
            None,
        )
        .await?;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    let r = s.get(&format!("/api/extensions/{unknown_id}")).await?;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    let r = s.get("/api/nothing-here").await?;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    let r = s
        .request(Method::PATCH, "/api/extensions", None, None)
        .await?;
    assert_eq!((r.status, r.error_code()), (405, "method_not_allowed"));
    // HEAD answers as GET does, without the body: it used to be 405 on the API and 404 on
    // /healthz, so a monitor probing with HEAD saw a healthy server as down.
    for path in ["/healthz", "/readyz", "/api/extensions", "/api/queues", "/"] {
        let r = s.request(Method::HEAD, path, None, None).await?;
        assert_eq!(r.status, 200, "HEAD {path}: {}", r.text);
        assert!(r.text.is_empty(), "HEAD {path} sent a body: {}", r.text);
    }
    for (query, field) in [
        ("status=bogus", "status"),
        ("is_active=maybe", "is_active"),
        ("colour=red", "colour"),
        ("department=%00", "department"),
    ] {
        let r = s.get(&format!("/api/extensions?{query}")).await?;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "invalid_filter"),
            "{query}"
        );
        assert!(
            r.json["error"]["fields"][field].is_string(),
            "{query}: {}",
            r.text
        );
    }

    // None of it changed anything.
    assert_eq!(s.get("/api/extensions").await?.json, before);
    s.stop().await
}

#[tokio::test]
async fn tokens_guard_writes_reads_metrics_and_the_stream() -> anyhow::Result<()> {
    let s = TestServer::start(Options {
        admin_token: Some("admin-secret".into()),
        viewer_token: Some("viewer-secret".into()),
        ..Options::default()
    })
    .await?;
    let body = json!({"extension": "3001", "agent_name": "Eve", "department": "Ops"});
    for (token, want) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some("viewer-secret"), 401),
        (Some("admin-secretx"), 401),
        (Some("admin-secret"), 201),
    ] {
        let r = s
            .request(Method::POST, "/api/extensions", Some(&body), token)
            .await?;
        assert_eq!(r.status, want, "POST with {token:?}: {}", r.text);
        if want == 401 {
            assert_eq!(r.error_code(), "unauthorized");
        }
    }
    let id = id_of(&s.record_as("3001", Some("viewer-secret")).await?);
    let del = format!("/api/extensions/{id}");
    let r = s
        .request(Method::DELETE, &del, None, Some("viewer-secret"))
        .await?;
    assert_eq!(r.status, 401);
    let r = s
        .request(Method::PUT, &del, Some(&json!({"agent_name": "X"})), None)
        .await?;
    assert_eq!(r.status, 401);

    for path in ["/api/extensions", "/metrics", "/api/openapi.json", &del] {
        for (token, want) in [
            (None, 401),
            (Some("wrong"), 401),
            (Some("viewer-secret"), 200),
            (Some("admin-secret"), 200),
        ] {
            let r = s.request(Method::GET, path, None, token).await?;
            assert_eq!(r.status, want, "GET {path} with {token:?}");
        }
    }
    // Refusals are counted under their route, though they never reached it.
    let m = s
        .request(Method::GET, "/metrics", None, Some("viewer-secret"))
        .await?;
    let want =
        "extstatus_http_requests_total{route=\"/api/extensions\",method=\"POST\",status=\"401\"} 4";
    assert!(m.text.contains(want), "missing {want:?} in\n{}", m.text);
    // A made-up method is counted as `other`: any client may send any token as a method, and
    // each would otherwise be a series of its own for as long as the process runs.
    for made_up in ["BREW", "XYZZY1", "XYZZY2"] {
        let method = Method::from_bytes(made_up.as_bytes())?;
        s.request(method, "/api/extensions", None, None).await?;
    }
    let m = s
        .request(Method::GET, "/metrics", None, Some("viewer-secret"))
        .await?;
    assert!(!m.text.contains("XYZZY"), "{}", m.text);
    let want = "extstatus_http_requests_total{route=\"/api/extensions\",method=\"other\",status=\"401\"} 3";
    assert!(m.text.contains(want), "missing {want:?} in\n{}", m.text);
    // Always open.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(s.get(path).await?.status, 200, "{path}");
    }
    // The stream: no token is refused before the upgrade; `?token=` works.
    assert!(
        s.ws("").await.is_err(),
        "a stream without a token is refused"
    );
    assert!(s.ws("?token=wrong").await.is_err());
    let mut ws = s.ws("?token=viewer-secret").await?;
    assert!(matches!(
        ws.next().await?,
        hub::ServerMessage::Snapshot { .. }
    ));
    ws.close().await?;
    s.stop().await?;

    // With only an admin token, reads stay open and writes need it.
    let s = TestServer::start(Options {
        admin_token: Some("admin-only".into()),
        ..Options::default()
    })
    .await?;
    assert_eq!(s.get("/api/extensions").await?.status, 200);
    assert_eq!(s.get("/metrics").await?.status, 200);
    let r = s
        .request(Method::POST, "/api/extensions", Some(&body), None)
        .await?;
    assert_eq!(r.status, 401);
    let r = s
        .request(
            Method::POST,
            "/api/extensions",
            Some(&body),
            Some("admin-only"),
        )
        .await?;
    assert_eq!(r.status, 201);
    s.stop().await
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() -> anyhow::Result<()> {
    let s = TestServer::start(Options::default()).await?;
    let r = s.get("/healthz").await?;
    assert_eq!((r.status, &r.json["status"]), (200, &json!("ok")));
    let r = s.get("/readyz").await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "ready");
    assert_eq!(r.json["store"]["backend"], "embedded");
    assert_eq!(r.json["store"]["ok"], true);
    assert_eq!(r.json["ami"]["configured"], false);
    assert_eq!(r.json["ami"]["connected"], false);
    for key in ["last_event_at", "events_per_minute", "errors", "reconnects"] {
        assert!(
            r.json["ami"].get(key).is_some(),
            "readyz lacks ami.{key}: {}",
            r.text
        );
    }

    // A 404 on a templated route is counted under its pattern, not its id.
    s.get("/api/extensions/0123456789abcdef01234567").await?;
    s.create("4001", "Finn", "Ops").await?;
    let m = s.get("/metrics").await?;
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.starts_with("text/plain"),
        "{}",
        m.content_type
    );
    for want in [
        "extstatus_http_requests_total{route=\"/api/extensions/{id}\",method=\"GET\",status=\"404\"} 1",
        "extstatus_http_requests_total{route=\"/api/extensions\",method=\"POST\",status=\"201\"} 1",
        "extstatus_changes_total{cause=\"create\"} 1",
        "extstatus_store_writes_total{cause=\"user_edit\"} 1",
        "extstatus_hub_published_total 1",
        "extstatus_ws_clients 0",
        "# TYPE extstatus_ami_events_total counter",
        "extstatus_ami_reconnects_total 0",
        "extstatus_ws_lag_resyncs_total 0",
        "extstatus_unknown_extensions_total 0",
        "extstatus_drift_repaired_total 0",
    ] {
        assert!(m.text.contains(want), "missing {want:?} in\n{}", m.text);
    }

    let doc = s.get("/api/openapi.json").await?;
    assert_eq!(doc.status, 200);
    assert!(
        doc.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3'))
    );
    let paths = doc.json["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/extensions", &["get", "post"][..]),
        ("/api/extensions/{id}", &["get", "put", "delete"][..]),
        ("/healthz", &["get"][..]),
        ("/readyz", &["get"][..]),
        ("/metrics", &["get"][..]),
        ("/ws", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "openapi lacks {m} {path}");
        }
    }
    s.stop().await
}

/// The unfiltered list is served from a body built once per change: plain and gzip (for a
/// client that asks for it) say the same, and a change is in the very next answer of both.
#[tokio::test]
async fn the_cached_list_follows_every_change_plain_and_gzip() -> anyhow::Result<()> {
    use std::io::Read as _;
    let s = TestServer::start(Options::default()).await?;
    let client = reqwest::Client::new();
    let both = || async {
        let plain: Value = client
            .get(s.url("/api/extensions"))
            .send()
            .await?
            .json()
            .await?;
        let zipped = client
            .get(s.url("/api/extensions"))
            .header("Accept-Encoding", "deflate, gzip;q=0.5")
            .send()
            .await?;
        anyhow::ensure!(zipped.status() == 200);
        anyhow::ensure!(
            zipped
                .headers()
                .get("content-encoding")
                .map(|v| v.as_bytes())
                == Some(b"gzip"),
            "{:?}",
            zipped.headers()
        );
        let bytes = zipped.bytes().await?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        let unzipped: Value = serde_json::from_str(&text)?;
        anyhow::ensure!(plain == unzipped, "{plain} != {unzipped}");
        anyhow::Ok(plain)
    };
    assert_eq!(both().await?, serde_json::json!([]));
    let created = s.create("1001", "Alice", "Sales").await?;
    let list = both().await?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let id = id_of(&created);
    let renamed = s
        .request(
            Method::PUT,
            &format!("/api/extensions/{id}"),
            Some(&serde_json::json!({"agent_name": "Alicia"})),
            None,
        )
        .await?;
    assert_eq!(renamed.status, 200);
    assert_eq!(both().await?[0]["agent_name"], "Alicia");
    // A client that refuses gzip gets the plain body.
    let refused = client
        .get(s.url("/api/extensions"))
        .header("Accept-Encoding", "gzip;q=0")
        .send()
        .await?;
    assert!(refused.headers().get("content-encoding").is_none());
    s.stop().await
}
