//! End-to-end tests of the `api-server` binary's start-up: settings it cannot use are refused
//! before it serves, with exit status 2 and a message that names the flag (and never quotes a
//! secret); an empty environment variable counts as not set, so the file's value stays.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long a refused start may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs the binary with `args` (and no `EXTSTATUS_*` from the environment), in a fresh data
/// directory unless `args` name one; its exit status and standard error.
fn run(args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let bin = tests::process::binary()?;
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--listen", "127.0.0.1:0"]);
    if !args.contains(&"--data-dir") {
        cmd.arg("--data-dir").arg(dir.path());
    }
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("EXTSTATUS_") || key == "MONGODB_URI" || key == "AMI_SECRET" {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    // A setting that is not refused leaves the server serving: stopped, and said so.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    match status {
        Some(status) => Ok((status.code(), stderr)),
        None => Ok((None, format!("still serving after {PATIENCE:?}:\n{stderr}"))),
    }
}

#[test]
fn unusable_settings_are_refused_naming_the_flag() -> anyhow::Result<()> {
    let rows: &[(&[&str], &str)] = &[
        // Used to start, then the pruner panicked (a date before the calendar's start), and
        // MongoDB refused the TTL index of more than 68 years at start (exit status 1).
        (&["--history-days", "4294967295"], "--history-days: "),
        (&["--history-days", "30000"], "--history-days: "),
        // Used to be exit status 1 with the driver's message, which quoted the password when
        // it held an unescaped '/'.
        (
            &["--mongodb-uri", "mongodb://app:hunter2/x@127.0.0.1:1/"],
            "--mongodb-uri: ",
        ),
        (&["--mongodb-uri", "no scheme"], "--mongodb-uri: "),
        // Used to be exit status 1 with the server's InvalidNamespace.
        (
            &[
                "--mongodb-uri",
                "mongodb://127.0.0.1:1/",
                "--mongodb-db",
                "call.center",
            ],
            "--mongodb-db: ",
        ),
    ];
    // Used to be exit status 1 with "store: cannot use FILE: File exists (os error 17)".
    let file = tempfile::NamedTempFile::new()?;
    let file = file.path().to_str().context("a UTF-8 temporary path")?;
    let not_a_dir: &[&str] = &["--data-dir", file];
    // Used to say "data did not match any variant of untagged enum Raw".
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(config.path(), "pause_reasons = [\"Lunch\", 5]\n")?;
    let config = config.path().to_str().context("a UTF-8 temporary path")?;
    let bad_file: &[&str] = &["--config", config];
    let rows = [
        rows,
        &[
            (not_a_dir, "--data-dir: "),
            (bad_file, "pause_reasons: entry 2 is not a text"),
        ],
    ]
    .concat();
    for (args, names) in &rows {
        let (code, stderr) = run(args)?;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn empty_variables_count_as_unset_and_leave_the_files_tokens_in_force() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("extstatus.toml");
    std::fs::write(
        &file,
        "admin_token = \"file-admin\"\nviewer_token = \"file-viewer\"\n",
    )?;
    let data = dir.path().join("data");
    let config = file.to_string_lossy().into_owned();
    // As a compose file's `EXTSTATUS_ADMIN_TOKEN=${ADMIN_TOKEN:-}` gives them: they used to
    // replace the file's tokens with none, and the API was open. Other empty variables are
    // unset too: an empty path, address or duration used to fail the whole command line.
    let server = tests::process::ServerProcess::start_with_env(
        &data,
        &["--config", &config],
        &[
            ("EXTSTATUS_ADMIN_TOKEN", ""),
            ("EXTSTATUS_VIEWER_TOKEN", ""),
            ("EXTSTATUS_MONGODB_URI", ""),
            ("MONGODB_URI", ""),
            ("EXTSTATUS_AMI", ""),
            ("EXTSTATUS_WS_TIMEOUT", ""),
            ("EXTSTATUS_RATE_LIMIT", ""),
            ("EXTSTATUS_LOG_FORMAT", ""),
            ("EXTSTATUS_DEMO", ""),
        ],
    )?;
    let http = reqwest::Client::new();
    let list = server.url("/api/extensions");
    let open = http.get(&list).send().await?.status().as_u16();
    let viewer = http
        .get(&list)
        .bearer_auth("file-viewer")
        .send()
        .await?
        .status()
        .as_u16();
    let body = serde_json::json!({"extension": "5001", "agent_name": "A", "department": "D"});
    let write = http
        .post(&list)
        .json(&body)
        .bearer_auth("file-viewer")
        .send()
        .await?
        .status()
        .as_u16();
    let admin = http
        .post(&list)
        .json(&body)
        .bearer_auth("file-admin")
        .send()
        .await?
        .status()
        .as_u16();
    let log = server.log();
    server.signal_and_wait("TERM")?;
    assert_eq!(open, 401, "a read without a token: {log}");
    assert_eq!(viewer, 200, "a read with the file's viewer token");
    assert_eq!(write, 401, "a write with the viewer token");
    assert_eq!(admin, 201, "a write with the file's admin token");
    Ok(())
}
