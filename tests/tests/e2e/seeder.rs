//! The `seeder` binary against a real server (`--api`): it waits out the write rate limit as
//! the server's `Retry-After` says, instead of failing the rows, and stops at once with exit
//! status 2 when the server refuses its token.

use std::process::Output;

use anyhow::ensure;
use api_server::config::SecurityConfig;
use tests::server::{Options, TestServer};

/// Runs the seeder off the async runtime, with no target or token variables of its own.
async fn seeder(args: Vec<String>) -> anyhow::Result<Output> {
    let bin = tests::process::seeder_binary()?;
    Ok(tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(&args);
        for var in [
            "EXTSTATUS_DATA_DIR",
            "EXTSTATUS_MONGODB_URI",
            "MONGODB_URI",
            "EXTSTATUS_API",
            "EXTSTATUS_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.output()
    })
    .await??)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn args(s: &TestServer, range: &str, token: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--api".into(),
        s.url(""),
        "--range".into(),
        range.into(),
        "--department".into(),
        "Sales".into(),
    ];
    if let Some(token) = token {
        v.extend(["--token".to_owned(), token.to_owned()]);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_waits_out_the_write_rate_limit_of_a_real_server() -> anyhow::Result<()> {
    let s = TestServer::start(Options {
        admin_token: Some("adm1n".into()),
        security: Some(SecurityConfig {
            rate_limit: 3,
            rate_limit_burst: 2,
            ..SecurityConfig::default()
        }),
        ..Options::default()
    })
    .await?;
    // Eight writes at a burst of 2 and 3 a second: most are answered 429 at first.
    let out = seeder(args(&s, "4001-4008", Some("adm1n"))).await?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(
        text(&out.stdout).starts_with("created 8, updated 0, unchanged 0, rejected 0 (API "),
        "{}",
        text(&out.stdout)
    );
    ensure!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    let listed = s.get("/api/extensions").await?;
    ensure!(
        listed.json.as_array().map(Vec::len) == Some(8),
        "{}",
        listed.text
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_stops_at_once_when_a_real_server_refuses_its_token() -> anyhow::Result<()> {
    let s = TestServer::start(Options {
        admin_token: Some("adm1n".into()),
        viewer_token: Some("v1ew".into()),
        ..Options::default()
    })
    .await?;
    for (token, why) in [
        (None, "the token is missing"),
        (Some("wrong"), "is wrong or not the admin token"),
        // The viewer token reads the list, then the first write is refused.
        (Some("v1ew"), "is wrong or not the admin token"),
    ] {
        let out = seeder(args(&s, "4101-4200", token)).await?;
        ensure!(out.status.code() == Some(2), "{token:?}: {out:?}");
        let err = text(&out.stderr);
        ensure!(err.lines().count() == 1, "{token:?}: {err}");
        ensure!(
            err.contains(why) && err.contains("--token"),
            "{token:?}: {err}"
        );
    }
    let listed = s
        .request(reqwest::Method::GET, "/api/extensions", None, Some("v1ew"))
        .await?;
    ensure!(
        listed.json.as_array().map(Vec::len) == Some(0),
        "{}",
        listed.text
    );
    s.stop().await
}
