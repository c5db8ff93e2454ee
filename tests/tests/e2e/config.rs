//! End-to-end tests of the `api-server` binary's start-up: settings it cannot use are refused
//! before it serves, with exit status 2 and a message that names the flag (and never quotes a
//! secret).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long a refused start may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs the binary with `args` (and no `EXTSTATUS_*` from the environment); its exit status and
/// standard error.
fn run(args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let bin = tests::process::binary()?;
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args);
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
    for (args, names) in rows {
        let (code, stderr) = run(args)?;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
    }
    Ok(())
}
