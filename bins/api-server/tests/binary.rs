//! The `api-server` binary itself: configuration from flags, environment and file with their
//! precedence, the refusal to serve the network without an admin token, SIGTERM as a graceful
//! shutdown, and secrets kept out of everything it prints.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

fn server() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-server"));
    // The test's own environment must not leak settings into the child.
    for (key, _) in std::env::vars() {
        if key.starts_with("EXTSTATUS_") || key == "AMI_SECRET" || key == "MONGODB_URI" {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs a command that must fail at start-up; returns its exit code and stderr.
fn refused(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run api-server");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configurations_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("extstatus.toml");
    std::fs::write(&file, "colour = \"red\"\n").expect("write config");
    let cases: Vec<(Command, &str)> = vec![
        (
            {
                let mut c = server();
                c.env("EXTSTATUS_LISTEN", "0.0.0.0:18999");
                c
            },
            "0.0.0.0:18999 is not a loopback address",
        ),
        (
            {
                let mut c = server();
                c.args(["--listen", "0.0.0.0:18999"])
                    .env("EXTSTATUS_ADMIN_TOKEN", "");
                c
            },
            "without --admin-token",
        ),
        (
            {
                let mut c = server();
                c.arg("--config").arg(&file);
                c
            },
            "unknown field `colour`",
        ),
        (
            {
                let mut c = server();
                c.args(["--pbx-grace", "soon"]);
                c
            },
            "soon",
        ),
    ];
    // An AMI address without a usable port used to start and retry "invalid socket address"
    // forever; it is a configuration error naming the flag.
    let mut cases = cases;
    for (ami, want) in [
        (
            "pbx.example",
            "--ami: \"pbx.example\" is not a host:port address (no port)",
        ),
        ("10.0.0.5:", "the port must be a number from 1 to 65535"),
        (
            "10.0.0.5:70000",
            "the port must be a number from 1 to 65535",
        ),
        (":5038", "(no host)"),
    ] {
        let mut c = server();
        c.args(["--ami", ami, "--ami-user", "u"]);
        cases.push((c, want));
    }
    for (mut cmd, want) in cases {
        let (code, stderr) = refused(&mut cmd);
        assert_eq!(code, Some(2), "{cmd:?}: {stderr}");
        assert!(stderr.contains(want), "{cmd:?}: {stderr}");
    }
}

#[test]
fn a_failure_at_start_up_names_its_cause_once() {
    // A store that cannot be opened used to print its cause three times over, once per link
    // of the error chain ("cannot use X: ...: cannot use X: ...: No such file ...").
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no").join("such").join("dir");
    std::fs::write(dir.path().join("no"), "a file, not a directory").expect("write");
    let (code, stderr) = refused(
        server()
            .arg("--data-dir")
            .arg(&missing)
            .args(["--listen", "127.0.0.1:0"]),
    );
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("api-server: store: "), "{stderr}");
    let shown = missing.display().to_string();
    assert_eq!(last.matches(&shown).count(), 1, "{stderr}");
}

#[test]
fn boolean_settings_from_the_environment_take_the_usual_words() {
    // Each run gets as far as the listen-address check, which comes after parsing, so the
    // refusal proves the boolean words were accepted.
    for word in ["1", "0", "yes", "no", "true", "false", "on", "off"] {
        let mut cmd = server();
        cmd.env("EXTSTATUS_DEMO", word)
            .env("EXTSTATUS_AMI_MD5", word)
            .args(["--listen", "0.0.0.0:18998"]);
        let (code, stderr) = refused(&mut cmd);
        assert_eq!(code, Some(2), "{word}: {stderr}");
        assert!(
            stderr.contains("0.0.0.0:18998 is not a loopback address"),
            "{word}: {stderr}"
        );
    }
}

/// Reads the child's stderr on a thread, line by line.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn get(addr: &str, path: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serves_with_merged_settings_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("extstatus.toml");
    // The file asks for a non-loopback address and a viewer token; the environment and the
    // flags override the address, the file's viewer token stays.
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:18998\"\nviewer_token = \"file-viewer-5e1d\"\nami_user = \"watcher\"\n",
    )
    .expect("write config");
    let mut child = server()
        .arg("--config")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0", "--log", "debug"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("EXTSTATUS_LISTEN", "0.0.0.0:18997")
        .env("EXTSTATUS_ADMIN_TOKEN", "env-admin-8c2f")
        .env("AMI_SECRET", "plain-ami-3b7a")
        // Nothing listens on the discard port: the client keeps retrying, and logging.
        .env("EXTSTATUS_AMI", "127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start api-server");
    let rx = lines(&mut child);
    let mut log = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("the server logs its address");
        log.push(line.clone());
        if line.contains("listening")
            && let Some(at) = line.find("addr=")
        {
            break line[at + 5..]
                .split_whitespace()
                .next()
                .expect("addr")
                .to_owned();
        }
    };
    assert!(addr.starts_with("127.0.0.1:"), "the flag wins: {addr}");

    // The file's viewer token guards reads; the environment's admin token is accepted too.
    assert!(get(&addr, "/api/extensions", None).starts_with("HTTP/1.1 401"));
    assert!(get(&addr, "/api/extensions", Some("file-viewer-5e1d")).starts_with("HTTP/1.1 200"));
    assert!(get(&addr, "/api/extensions", Some("env-admin-8c2f")).starts_with("HTTP/1.1 200"));
    assert!(get(&addr, "/healthz", None).starts_with("HTTP/1.1 200"));

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = done
        .recv_timeout(PATIENCE)
        .expect("the server stops after SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    log.extend(rx.try_iter());
    let log = log.join("\n");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    assert!(log.contains("watcher"), "the AMI user is logged: {log}");
    for secret in ["file-viewer-5e1d", "env-admin-8c2f", "plain-ami-3b7a"] {
        assert!(!log.contains(secret), "{secret} was logged:\n{log}");
    }
}
