//! The `seeder` binary end to end: real processes against a real embedded store, and against a
//! small in-test HTTP server that answers like the api-server's REST API.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, ensure};
use domain::{Extension, ExtensionFilter, ExtensionPatch, NewExtension, RecordId};
use serde_json::{Map, Value, json};
use store::{EmbeddedStore, Repository, StoreOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn seeder(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_seeder"))
        .args(args)
        .env_remove("EXTSTATUS_DATA_DIR")
        .env_remove("EXTSTATUS_MONGODB_URI")
        .env_remove("MONGODB_URI")
        .env_remove("EXTSTATUS_API")
        .env_remove("EXTSTATUS_TOKEN")
        .output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the seeder off the async runtime, since it is a blocking child process.
async fn seeder_async(args: Vec<String>) -> Result<Output> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        seeder(&args)
    })
    .await?
}

async fn stored(dir: &Path) -> Result<Vec<Extension>> {
    let store = EmbeddedStore::open(dir, StoreOptions::default()).await?;
    Ok(store.list(&ExtensionFilter::default()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_loads_once_and_a_second_run_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--range".to_owned(),
            "1001-1050".into(),
            "--department".into(),
            "Sales".into(),
            "--data-dir".into(),
            data_arg.clone(),
        ];
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let file = data.join(store::DB_FILE_NAME).display().to_string();

    // A dry run on an empty store lists the creates and writes nothing.
    let dry = seeder_async(args(&["--dry-run"])).await?;
    ensure!(dry.status.success(), "{}", text(&dry.stderr));
    let out = text(&dry.stdout);
    ensure!(
        out.starts_with(
            "create 1001: agent_name \"Agent 1001\", department \"Sales\", is_active true\n"
        ),
        "{out}"
    );
    ensure!(out.ends_with(&format!(
        "dry run, nothing written to the embedded store {file}: would create 50, would update 0, \
         unchanged 0, rejected 0\n"
    )));
    ensure!(stored(&data).await?.is_empty());

    let first = seeder_async(args(&[])).await?;
    ensure!(first.status.success(), "{}", text(&first.stderr));
    ensure!(
        text(&first.stdout)
            == format!("created 50, updated 0, unchanged 0, rejected 0 (embedded store {file})\n"),
        "{}",
        text(&first.stdout)
    );
    let records = stored(&data).await?;
    ensure!(records.len() == 50);
    ensure!(records[0].agent_name.as_str() == "Agent 1001");
    ensure!(
        records
            .iter()
            .all(|r| r.department.as_str() == "Sales" && r.is_active)
    );

    let second = seeder_async(args(&[])).await?;
    ensure!(second.status.success());
    ensure!(
        text(&second.stdout)
            == format!("created 0, updated 0, unchanged 50, rejected 0 (embedded store {file})\n")
    );
    // Nothing was rewritten: the records are exactly as before.
    ensure!(stored(&data).await? == records);
    Ok(())
}

/// Runs the seeder on `input` (written to `name` in `dir`) into the embedded store `dir/data`.
async fn load(dir: &Path, name: &str, input: &[u8], extra: &[&str]) -> Result<Output> {
    let file = dir.join(name);
    std::fs::write(&file, input)?;
    let mut args = vec![
        "--from".to_owned(),
        file.display().to_string(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    seeder_async(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_writes_nothing_at_all() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let csv = "extension,agent_name,department,is_active\n\
               1001,Alice,Sales,true\n\
               1002,Bob,Sales,perhaps\n\
               10x3,Carol,Sales,\n\
               1004,\"Dan, Jr.\",Support,no\n";
    let out = load(dir.path(), "agents.csv", csv.as_bytes(), &[]).await?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    let name = dir.path().join("agents.csv").display().to_string();
    ensure!(
        err == format!(
            "{name}: line 3: is_active: must be true or false (or yes/no, 1/0), got \"perhaps\"\n\
             {name}: line 4: extension: must contain only the digits 0-9\n\
             {name}: 2 of 4 rows refused; nothing was written to the embedded store {} \
             (correct the rows and run again)\n",
            data.join(store::DB_FILE_NAME).display()
        ),
        "{err}"
    );
    ensure!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    ensure!(!data.exists(), "the store was not even created");

    // A valid file loads; the same rows with one bad one added change nothing.
    let good = "extension,agent_name,department,is_active\n1001,Alice,Sales,true\n1004,\"Dan, Jr.\",Support,no\n";
    let out = load(dir.path(), "agents.csv", good.as_bytes(), &[]).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let before = stored(&data).await?;
    ensure!(before.len() == 2);
    let json = r#"[
  {"extension": "1001", "agent_name": "Alice Smith", "department": "Sales"},
  {"extension": "1005", "agent_name": "Eve", "department": "Support", "last_seen": null}
]"#;
    let out = load(dir.path(), "agents.json", json.as_bytes(), &[]).await?;
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains(
            "line 3 (element 2): last_seen: is set by the server and cannot be written\n"
        ),
        "{}",
        text(&out.stderr)
    );
    ensure!(stored(&data).await? == before, "1001 was not renamed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_members_given_twice_are_refused_naming_member_element_and_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let json = "[\n  {\"extension\": \"1001\", \"agent_name\": \"A\", \"department\": \"S\"},\n  \
                {\"extension\": \"1002\", \"agent_name\": \"B\", \"department\": \"S\", \"extension\": \"1003\"}\n]";
    let out = load(dir.path(), "agents.json", json.as_bytes(), &[]).await?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    ensure!(
        err.contains(
            "agents.json: line 3 (element 2): extension: is given more than once in this object\n"
        ),
        "{err}"
    );
    ensure!(!dir.path().join("data").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cell_counts_and_unclosed_quotes_are_named_by_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let csv =
        "extension,agent_name,department\n1001,Alice\n1002,Bob,Sales,extra\n1003,Carol,Sales\n";
    let out = load(dir.path(), "a.csv", csv.as_bytes(), &[]).await?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    ensure!(
        err.contains("a.csv: line 2: expected 3 cells, as the header has, got 2\n"),
        "{err}"
    );
    ensure!(
        err.contains("a.csv: line 3: expected 3 cells, as the header has, got 4\n"),
        "{err}"
    );
    ensure!(
        err.contains("2 of 3 rows refused; nothing was written"),
        "{err}"
    );

    let csv = "extension,agent_name,department\r\n1001,Alice,Sales\r\n1002,\"Bob,Sales\r\n1003,Carol,Sales\r\n";
    let out = load(dir.path(), "a.csv", csv.as_bytes(), &[]).await?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    ensure!(
        err.contains("a.csv: CSV: line 3: a quoted field opened on this line is never closed"),
        "{err}"
    );
    ensure!(!dir.path().join("data").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_order_marks_crlf_and_other_hostile_inputs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let csv = "\u{feff}extension,agent_name,department\r\n1001,Alice,Sales\r\n\r\n";
    let out = load(dir.path(), "a.csv", csv.as_bytes(), &[]).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let json = "\u{feff}[\r\n{\"extension\":\"1002\",\"agent_name\":\"Bob\",\"department\":\"Sales\"}\r\n]\r\n";
    let out = load(dir.path(), "b.json", json.as_bytes(), &[]).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(stored(&data).await?.len() == 2);

    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend("extension".encode_utf16().flat_map(u16::to_le_bytes));
    let out = load(dir.path(), "c.csv", &utf16, &[]).await?;
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("c.csv: the file is UTF-16"),
        "{}",
        text(&out.stderr)
    );

    let big = dir.path().join("big.csv");
    std::fs::File::create(&big)?.set_len(seeder::MAX_INPUT_BYTES + 1)?;
    let out = seeder_async(vec![
        "--from".into(),
        big.display().to_string(),
        "--dry-run".into(),
    ])
    .await?;
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("big.csv: larger than 64 MiB"),
        "{}",
        text(&out.stderr)
    );

    let range = |spec: &str, dept: &str| {
        seeder_async(vec![
            "--range".into(),
            spec.into(),
            "--department".into(),
            dept.into(),
            "--data-dir".into(),
            data.display().to_string(),
        ])
    };
    for (spec, dept, want) in [
        (
            "1-99999999999",
            "S",
            "--range: \"1\": extension must be at least 2 characters",
        ),
        (
            "1001-1003",
            &"D".repeat(51),
            "--department: department must be at most 50 characters",
        ),
        (
            "1001-1003",
            "Sa\u{7}les",
            "--department: department must not contain control characters",
        ),
        (
            "12345678901-12345678902",
            "S",
            "extension must be at most 10 characters",
        ),
    ] {
        let out = range(spec, dept).await?;
        ensure!(out.status.code() == Some(2), "{spec}");
        let err = text(&out.stderr);
        ensure!(err.contains(want), "{spec} {dept}: {err}");
    }
    ensure!(stored(&data).await?.len() == 2, "nothing more was written");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_opened_stops_the_run_and_says_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Held open by this process, as a running api-server would hold it.
    let held = EmbeddedStore::open(dir.path(), StoreOptions::default()).await?;
    let out = seeder_async(vec![
        "--range".into(),
        "1001-1002".into(),
        "--department".into(),
        "Sales".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
    ])
    .await?;
    ensure!(out.status.code() == Some(2));
    let err = text(&out.stderr);
    ensure!(err.contains(&held.path().display().to_string()), "{err}");
    ensure!(err.contains("--api"), "{err}");
    drop(held);

    let file = tempfile::NamedTempFile::new()?;
    let below = file.path().join("data");
    let out = seeder_async(vec![
        "--range".into(),
        "1001-1002".into(),
        "--department".into(),
        "Sales".into(),
        "--data-dir".into(),
        below.display().to_string(),
    ])
    .await?;
    ensure!(out.status.code() == Some(2));
    ensure!(text(&out.stderr).contains(&format!("cannot use {}", below.display())));

    let out = seeder_async(vec![
        "--range".into(),
        "1050-1001".into(),
        "--department".into(),
        "S".into(),
    ])
    .await?;
    ensure!(out.status.code() == Some(2));
    ensure!(text(&out.stderr).contains("the start 1050 is after the end 1001"));

    // An API nobody listens on: the reason is shown, not only reqwest's "error sending request".
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let out = seeder_async(vec![
        "--range".into(),
        "1001-1002".into(),
        "--department".into(),
        "S".into(),
        "--api".into(),
        url.clone(),
    ])
    .await?;
    ensure!(out.status.code() == Some(2));
    let err = text(&out.stderr);
    ensure!(
        err.contains(&url) && err.to_lowercase().contains("connection refused"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_uri_is_taken_from_the_environment() -> Result<()> {
    // Nothing listens on port 1: the run must fail as "unavailable" after the selection
    // timeout, naming the server, instead of quietly filling an embedded store.
    let cwd = tempfile::tempdir()?;
    let dir = cwd.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_seeder"))
            .args(["--range", "1001-1002", "--department", "Sales"])
            .current_dir(&dir)
            .env_remove("EXTSTATUS_DATA_DIR")
            .env_remove("EXTSTATUS_MONGODB_URI")
            .env_remove("EXTSTATUS_API")
            .env("MONGODB_URI", "mongodb://127.0.0.1:1/")
            .output()
    })
    .await??;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    ensure!(err.contains("the store is unavailable"), "{err}");
    ensure!(err.contains("127.0.0.1:1"), "{err}");
    ensure!(
        !cwd.path().join("data").exists(),
        "no embedded store was made"
    );
    Ok(())
}

/// A stand-in for the api-server's extension routes: enough HTTP/1.1 for one request per
/// connection, the same JSON shapes, and a bearer token.
#[derive(Default)]
struct FakeApi {
    records: Mutex<Vec<Extension>>,
    writes: Mutex<Vec<String>>,
    /// Answers (status, `Retry-After`) given to the next writes instead of doing them, as a
    /// rate-limited or briefly unavailable server would.
    busy: Mutex<std::collections::VecDeque<(u16, Option<&'static str>)>>,
    /// How many writes were answered from `busy`.
    refused: Mutex<usize>,
}

impl FakeApi {
    fn answer(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: &[u8],
    ) -> (u16, Value, Option<&'static str>) {
        let error = |status: u16, code: &str, message: &str| {
            (
                status,
                json!({"error": {"code": code, "message": message}}),
                None,
            )
        };
        // `view` is a viewer token: it may read, not write.
        let reader = auth == Some("Bearer view") && method == "GET";
        if auth != Some("Bearer s3cret") && !reader {
            return error(401, "unauthorized", "A valid admin token is required.");
        }
        if method != "GET"
            && let Some((status, retry_after)) = self.busy.lock().expect("lock").pop_front()
        {
            *self.refused.lock().expect("lock") += 1;
            let (status, body, _) = error(status, "busy", "Try again later.");
            return (status, body, retry_after);
        }
        let body: Map<String, Value> = serde_json::from_slice(body).unwrap_or_default();
        let mut records = self.records.lock().expect("lock");
        match (method, path) {
            ("GET", "/api/extensions") => (200, json!(*records), None),
            ("POST", "/api/extensions") => {
                let Ok(new) = NewExtension::from_json(&body) else {
                    return error(400, "invalid", "The request is invalid.");
                };
                if new.agent_name.as_str() == "Mallory" {
                    return (
                        400,
                        json!({"error": {"code": "invalid", "message": "The request is invalid.",
                            "fields": {"agent_name": "is not welcome here"}}}),
                        None,
                    );
                }
                if records.iter().any(|r| r.extension == new.extension) {
                    return error(409, "conflict", "The extension exists.");
                }
                self.writes
                    .lock()
                    .expect("lock")
                    .push(format!("POST {}", new.extension));
                let id = RecordId::parse(&format!("{:024x}", records.len() + 1)).expect("id");
                let record = Extension::create(id, new, domain::now());
                records.push(record.clone());
                (201, json!(record), None)
            }
            ("PUT", p) if p.starts_with("/api/extensions/") => {
                let id = &p["/api/extensions/".len()..];
                let Ok(patch) = ExtensionPatch::from_json(&body) else {
                    return error(400, "invalid", "The request is invalid.");
                };
                let Some(record) = records.iter_mut().find(|r| r.id.as_str() == id) else {
                    return error(404, "not_found", "No such extension.");
                };
                self.writes.lock().expect("lock").push(format!(
                    "PUT {} {}",
                    record.extension,
                    Value::Object(body)
                ));
                record.apply_patch(&patch, domain::now());
                (200, json!(record), None)
            }
            _ => error(404, "not_found", "No such route."),
        }
    }

    async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        while let Ok((mut socket, _)) = listener.accept().await {
            let api = self.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let auth = head.lines().find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_owned())
                });
                let body = &buf[head_end..head_end + length];
                let (status, json, retry_after) = api.answer(method, path, auth.as_deref(), body);
                let json = json.to_string();
                let retry_after = retry_after
                    .map(|s| format!("retry-after: {s}\r\n"))
                    .unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry_after}connection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_upserts_through_rest() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let api = Arc::new(FakeApi::default());
    tokio::spawn(api.clone().serve(listener));
    let run = |extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "--api".into(),
            url.clone(),
            "--token".into(),
            "s3cret".into(),
        ];
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        seeder_async(v)
    };

    let out = run(&["--range", "2001-2003", "--department", "Support"]).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(
        text(&out.stdout) == format!("created 3, updated 0, unchanged 0, rejected 0 (API {url})\n")
    );
    let again = run(&["--range", "2001-2003", "--department", "Support"]).await?;
    ensure!(text(&again.stdout).starts_with("created 0, updated 0, unchanged 3, rejected 0"));

    // A change goes out as a PUT of the changed fields only.
    let out = run(&["--range", "2002-2004", "--department", "Sales"]).await?;
    ensure!(text(&out.stdout).starts_with("created 1, updated 2, unchanged 0, rejected 0"));
    // Writes run concurrently, so their order is not fixed.
    let mut writes = api.writes.lock().expect("lock").clone();
    writes.sort();
    ensure!(
        writes
            == [
                "POST 2001",
                "POST 2002",
                "POST 2003",
                "POST 2004",
                "PUT 2002 {\"department\":\"Sales\"}",
                "PUT 2003 {\"department\":\"Sales\"}",
            ],
        "{writes:?}"
    );

    // A wrong token stops the run before any write, with the server's message, naming
    // --token; so does a missing one.
    for token in [&["--token", "wrong"][..], &[]] {
        let mut args = vec![
            "--api".to_owned(),
            url.clone(),
            "--range".into(),
            "2001-2001".into(),
            "--department".into(),
            "S".into(),
        ];
        args.extend(token.iter().map(|s| (*s).to_owned()));
        let out = seeder_async(args).await?;
        ensure!(out.status.code() == Some(2));
        let err = text(&out.stderr);
        let why = if token.is_empty() {
            "the token is missing"
        } else {
            "is wrong"
        };
        ensure!(
            err.contains("(401: A valid admin token is required.)")
                && err.contains(why)
                && err.contains("with --token"),
            "{err}"
        );
    }
    // A token that may read but not write: the first refused write stops the run at once,
    // with one message instead of one per row, and exit status 2.
    let out = seeder_async(vec![
        "--api".into(),
        url.clone(),
        "--token".into(),
        "view".into(),
        "--range".into(),
        "2101-2150".into(),
        "--department".into(),
        "S".into(),
    ])
    .await?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    ensure!(err.matches("401").count() == 1, "{err}");
    ensure!(err.lines().count() == 1, "{err}");
    ensure!(
        err.contains("the token given (--token or EXTSTATUS_TOKEN) is wrong"),
        "{err}"
    );
    ensure!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    let records = api.records.lock().expect("lock").clone();
    ensure!(records.len() == 4);
    let dept = records
        .iter()
        .find(|r| r.extension.as_str() == "2002")
        .context("2002")?;
    ensure!(dept.department.as_str() == "Sales");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_writes_told_to_wait_are_retried_and_other_refusals_name_the_extension() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let api = Arc::new(FakeApi::default());
    api.busy
        .lock()
        .expect("lock")
        .extend([(429, Some("1")), (503, None), (429, Some("0"))]);
    tokio::spawn(api.clone().serve(listener));
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("a.csv");
    std::fs::write(
        &csv,
        "extension,agent_name,department\n3001,Alice,Sales\n3002,Mallory,Sales\n3003,Carol,Sales\n",
    )?;
    let started = std::time::Instant::now();
    let out = seeder_async(vec![
        "--api".into(),
        url.clone(),
        "--token".into(),
        "s3cret".into(),
        "--from".into(),
        csv.display().to_string(),
        "--concurrency".into(),
        "1".into(),
    ])
    .await?;
    // Retry-After: 1, then no header (a 1 s back-off), then Retry-After: 0.
    ensure!(started.elapsed() >= std::time::Duration::from_secs(2));
    ensure!(*api.refused.lock().expect("lock") == 3);
    ensure!(out.status.code() == Some(1), "{out:?}");
    let err = text(&out.stderr);
    ensure!(
        err == format!(
            "{}: line 3: extension 3002: the API answered 400: The request is invalid. \
             (agent_name: is not welcome here)\n",
            csv.display()
        ),
        "{err}"
    );
    ensure!(
        text(&out.stdout)
            == format!("created 2, updated 0, unchanged 0, rejected 0, failed 1 (API {url})\n"),
        "{}",
        text(&out.stdout)
    );
    ensure!(api.records.lock().expect("lock").len() == 2);
    Ok(())
}

/// Runs the seeder in `cwd` with exactly these target and token variables set.
async fn seeder_env(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seeder"));
    cmd.args(args).current_dir(cwd);
    for var in [
        "EXTSTATUS_DATA_DIR",
        "EXTSTATUS_MONGODB_URI",
        "EXTSTATUS_MONGODB_DB",
        "MONGODB_URI",
        "EXTSTATUS_API",
        "EXTSTATUS_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_target_beats_the_environment() -> Result<()> {
    let cwd = tempfile::tempdir()?;
    let flag_dir = cwd.path().join("flag");
    let env_dir = cwd.path().join("env");
    let (flag_arg, env_arg) = (
        flag_dir.display().to_string(),
        env_dir.display().to_string(),
    );
    let range = ["--range", "1001-1002", "--department", "S"];
    let with = |extra: &[&str]| -> Vec<String> {
        range.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let cwd = cwd.path().to_path_buf();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            seeder_env(&args, &env, &cwd).await
        }
    };
    let dead_mongo = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200".to_owned();
    let every_env = vec![
        ("EXTSTATUS_API", "http://127.0.0.1:1".to_owned()),
        ("EXTSTATUS_MONGODB_URI", dead_mongo.clone()),
        ("MONGODB_URI", dead_mongo.clone()),
        ("EXTSTATUS_DATA_DIR", env_arg.clone()),
    ];

    // --data-dir on the command line beats every variable.
    let out = run(with(&["--data-dir", &flag_arg]), every_env.clone()).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(stored(&flag_dir).await?.len() == 2);
    ensure!(!env_dir.exists());

    // --mongodb-uri on the command line beats EXTSTATUS_API (no conflict with the variable).
    let out = run(with(&["--mongodb-uri", &dead_mongo]), every_env.clone()).await?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    let err = text(&out.stderr);
    ensure!(
        err.contains("the store is unavailable") && err.contains("127.0.0.1:1"),
        "{err}"
    );

    // Two targets on the command line are refused, naming both, before anything is read.
    let out = run(
        with(&["--api", "http://127.0.0.1:1", "--mongodb-uri", &dead_mongo]),
        vec![],
    )
    .await?;
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr)
            == "seeder: --api and --mongodb-uri each choose where the records go; give only one \
                of them\n",
        "{}",
        text(&out.stderr)
    );

    // Without a flag, the environment decides: EXTSTATUS_API first (a closed port here)...
    let out = run(with(&[]), every_env.clone()).await?;
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("http://127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
    // ... and empty variables count as unset: EXTSTATUS_DATA_DIR is used ...
    let empty = |keep: Vec<(&'static str, String)>| {
        let mut env: Vec<(&'static str, String)> = [
            "EXTSTATUS_API",
            "EXTSTATUS_MONGODB_URI",
            "MONGODB_URI",
            "EXTSTATUS_DATA_DIR",
            "EXTSTATUS_TOKEN",
            "EXTSTATUS_MONGODB_DB",
        ]
        .into_iter()
        .map(|k| (k, String::new()))
        .filter(|(k, _)| !keep.iter().any(|(kk, _)| kk == k))
        .collect();
        env.extend(keep);
        env
    };
    let out = run(
        with(&[]),
        empty(vec![("EXTSTATUS_DATA_DIR", env_arg.clone())]),
    )
    .await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(stored(&env_dir).await?.len() == 2);
    // ... and with every one empty, ./data of the working directory.
    let out = run(with(&[]), empty(vec![])).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(stored(&cwd.path().join("data")).await?.len() == 2);

    // A --token without --api would have sent the records to a store: refused.
    let out = run(with(&["--token", "t"]), vec![]).await?;
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("--token goes with --api"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_creates_and_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let file = data.join(store::DB_FILE_NAME);
    let run = |dept: &str, dry: bool| {
        let mut args: Vec<String> = ["--range", "1001-1003", "--department", dept, "--data-dir"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(data_arg.clone());
        if dry {
            args.push("--dry-run".into());
        }
        seeder_async(args)
    };
    let out = run("Sales", true).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(
        text(&out.stdout).contains("would create 3"),
        "{}",
        text(&out.stdout)
    );
    ensure!(
        !data.exists(),
        "the data directory was created by a dry run"
    );
    std::fs::create_dir(&data)?;
    let out = run("Sales", true).await?;
    ensure!(out.status.success());
    ensure!(!file.exists(), "the store file was created by a dry run");

    let out = run("Sales", false).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let before = (std::fs::read(&file)?, std::fs::metadata(&file)?.modified()?);
    let out = run("Support", true).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    ensure!(
        shown.starts_with("update 1001: department \"Sales\" -> \"Support\"\n")
            && shown.contains("would create 0, would update 3, unchanged 0"),
        "{shown}"
    );
    let after = (std::fs::read(&file)?, std::fs::metadata(&file)?.modified()?);
    ensure!(before == after, "a dry run changed the store file");

    // A store held by a running server: the dry run says so and points at --api.
    let held = store::EmbeddedStore::open(&data, StoreOptions::default()).await?;
    let out = run("Support", true).await?;
    ensure!(out.status.code() == Some(2));
    ensure!(text(&out.stderr).contains("--api"), "{}", text(&out.stderr));
    drop(held);
    Ok(())
}

/// Against a real MongoDB-wire server when `TEST_MONGODB_URI` is set (said on stderr when not):
/// a dry run reads the records it compares with and creates nothing, then a real run writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_dry_run_and_load() -> Result<()> {
    let Some(uri) = std::env::var("TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!("seeder MongoDB test skipped: TEST_MONGODB_URI is not set");
        return Ok(());
    };
    let database = format!(
        "extstatus_seeder_{}_{}",
        std::process::id(),
        domain::now().timestamp_millis()
    );
    let config = store::MongoConfig::new(&uri, &database);
    let cwd = tempfile::tempdir()?;
    let run = |dept: &'static str, dry: bool| {
        let (uri, database, cwd) = (uri.clone(), database.clone(), cwd.path().to_path_buf());
        async move {
            let mut args = vec![
                "--range",
                "1001-1002",
                "--department",
                dept,
                "--mongodb-db",
                &database,
            ];
            if dry {
                args.push("--dry-run");
            }
            seeder_env(&args, &[("MONGODB_URI", uri.as_str())], &cwd).await
        }
    };
    let result = async {
        let out = run("Sales", true).await?;
        ensure!(out.status.success(), "{}", text(&out.stderr));
        ensure!(
            text(&out.stdout).ends_with(&format!(
                "dry run, nothing written to the MongoDB database {database}: would create 2, \
                 would update 0, unchanged 0, rejected 0\n"
            )),
            "{}",
            text(&out.stdout)
        );
        let client = mongodb::Client::with_uri_str(&uri).await?;
        let collections = client.database(&database).list_collection_names().await?;
        ensure!(collections.is_empty(), "a dry run created {collections:?}");
        let out = run("Sales", false).await?;
        ensure!(out.status.success(), "{}", text(&out.stderr));
        let out = run("Support", true).await?;
        ensure!(
            text(&out.stdout).contains("would update 2"),
            "{}",
            text(&out.stdout)
        );
        let records = store::MongoStore::read_records(&config).await?;
        ensure!(records.len() == 2 && records.iter().all(|r| r.department.as_str() == "Sales"));
        ensure!(
            !cwd.path().join("data").exists(),
            "no embedded store was made"
        );
        Ok(())
    }
    .await;
    let store = store::MongoStore::connect(&config, StoreOptions::default()).await?;
    store.drop_collections().await?;
    result
}
