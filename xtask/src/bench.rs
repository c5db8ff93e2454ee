//! `cargo xtask bench`: the end-to-end measurements that `docs/performance.md` quotes, in one
//! command: release build; the shared AMI → WebSocket harness over a rate × clients matrix,
//! with `/healthz` asked every 100 ms through each cell;
//! the parser on a generated AMI stream; `GET /api/extensions` with 10,000 extensions under
//! `wrk` (plain and gzip); api-server's peak RSS at idle with 10,000 extensions and `/healthz`
//! latency. It writes `target/bench/summary.json` and the "Latest `cargo xtask bench`" section
//! of `docs/performance.md`. Never part of `ci`: numbers from a shared 2-core machine are
//! evidence for the docs, not pass/fail gates.
//!
//! `cargo xtask bench criterion [CRATE...]` runs the criterion benchmarks instead.
//!
//! Environment: `RATES` ("1000 5000 20000") and `CLIENTS` ("10 100 500") for the harness, and
//! any other knob of its `run_ours.sh`; `EXTSTATUS_SHARED_DIR` (the shared folder, by default
//! `../shared` beside the workspace); `BENCH_REST_PORT` (18731); `BENCH_SKIP` (a list of `e2e`,
//! `parser`, `rest` to leave out); `BENCH_HISTORY` (a number of history entries, e.g.
//! `5000000`: every end-to-end cell then starts on a store that already holds about that much
//! history, generated once by the store's `seed_history` example for the harness's
//! extensions, so the cells show whether a large history slows status writes).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The crates that have criterion benchmarks.
const BENCH_CRATES: [&str; 4] = ["ami-proto", "store", "hub", "domain"];

/// How many extensions the REST and idle-memory measurements hold.
const REST_EXTENSIONS: u32 = 10_000;

/// Where the generated section of `docs/performance.md` starts and ends.
const DOC_START: &str = "<!-- bench:start (written by `cargo xtask bench`) -->";
const DOC_END: &str = "<!-- bench:end -->";

/// The folder holding the end-to-end harness (`bench/e2e/run_ours.sh`), which is not part of
/// the repository.
fn shared_dir(root: &Path) -> Result<PathBuf> {
    std::env::var_os("EXTSTATUS_SHARED_DIR")
        .map(PathBuf::from)
        .or_else(|| root.parent().map(|p| p.join("shared")))
        .filter(|p| p.join("bench/e2e/run_ours.sh").is_file())
        .context(
            "bench/e2e/run_ours.sh not found in the shared folder beside the workspace; set \
             EXTSTATUS_SHARED_DIR to the folder that holds the end-to-end harness",
        )
}

/// The generator of the realistic AMI stream, kept in the repository.
fn generator(root: &Path) -> Result<PathBuf> {
    Some(root.join("fixtures/bench/gen_ami.py"))
        .filter(|p| p.is_file())
        .with_context(|| {
            format!(
                "fixtures/bench/gen_ami.py not found in the workspace at {}",
                root.display()
            )
        })
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root);
    cmd
}

fn check(cmd: &mut Command) -> Result<()> {
    eprintln!("bench: $ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("bench: $ {cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo xtask bench [criterion [CRATE...]]`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None => all(root),
        Some("criterion") => criterion(root, &args[1..]),
        Some(other) => bail!("unknown bench argument {other:?}: use no argument or `criterion`"),
    }
}

fn skipped(part: &str) -> bool {
    std::env::var("BENCH_SKIP").is_ok_and(|s| s.split([',', ' ']).any(|p| p == part))
}

fn all(root: &Path) -> Result<()> {
    let started = Instant::now();
    needs_tools()?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    check(cargo(root).args(["build", "--release", "--bins"]))?;
    let machine = machine();
    let mut summary = json!({ "machine": machine });
    let mut doc = String::new();
    let _ = writeln!(
        doc,
        "Machine: {machine}. Release build (`cargo build --release --bins`). Written by \
         `cargo xtask bench`; the raw results are in `target/bench/summary.json`.\n"
    );
    if !skipped("e2e") {
        summary["e2e"] = e2e(root, &shared_dir(root)?, &out, &mut doc)?;
    }
    if !skipped("parser") {
        summary["parser"] = parser(root, &mut doc)?;
    }
    if !skipped("rest") {
        summary["rest"] = rest(root, &out, &mut doc)?;
    }
    summary["elapsed_s"] = json!(started.elapsed().as_secs());
    let path = out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    write_doc(root, &doc)?;
    eprintln!(
        "bench: done in {} s; {} and docs/performance.md written",
        started.elapsed().as_secs(),
        path.display()
    );
    Ok(())
}

/// The programs the parts that run need, checked before anything is built or measured: a
/// missing one found only at the REST part would waste the end-to-end cells before it.
fn needs_tools() -> Result<()> {
    // Each is also the name of its Debian package.
    let mut wanted = vec!["python3", "curl"];
    if !skipped("rest") {
        wanted.push("wrk");
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|program| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "cargo xtask bench needs {} on the PATH (Debian: apt-get install {}), or \
             BENCH_SKIP=rest to leave the REST part out",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    format!("{cores} cores, load average {load} at the start")
}

/// The shared harness: fake PBX → api-server → N WebSocket clients, per rate × clients cell.
fn e2e(root: &Path, shared: &Path, out: &Path, doc: &mut String) -> Result<Value> {
    let rates = std::env::var("RATES").unwrap_or_else(|_| "1000 5000 20000".to_owned());
    let clients = std::env::var("CLIENTS").unwrap_or_else(|_| "10 100 500".to_owned());
    // The harness reads DURATION itself (10 s by default); the text only states it.
    let duration = std::env::var("DURATION").unwrap_or_else(|_| "10".to_owned());
    let dir = out.join("e2e");
    // A fresh folder per run, so rows.jsonl holds this run only.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let script = shared.join("bench/e2e/run_ours.sh");
    let mut run = Command::new(&script);
    run.current_dir(root)
        .env("RATES", &rates)
        .env("CLIENTS", &clients)
        .env("OUT", &dir);
    let history = preloaded_history(root, out)?;
    if let Some(h) = &history {
        // The harness seeds each cell's data folder with SEEDER_BIN: the wrapper puts the
        // history there first.
        run.env("SEEDER_BIN", &h.seeder);
    }
    let ws_port = std::env::var("WS_PORT").unwrap_or_else(|_| "8765".to_owned());
    let probe = HealthProbe::start(&ws_port);
    let ran = check(&mut run);
    let health = probe.stop();
    ran?;
    let table = std::fs::read_to_string(dir.join("table.md")).unwrap_or_default();
    let mut rows: Vec<Value> = std::fs::read_to_string(dir.join("rows.jsonl"))
        .with_context(|| format!("reading {}/rows.jsonl", dir.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("rows.jsonl of the harness")?;
    let _ = writeln!(
        doc,
        "### End to end: AMI event → api-server → WebSocket clients\n\n\
         Each cell: 1,000 seeded extensions, R `ExtensionStatus` events/s (every one a real \
         change) for {duration} s from the fake PBX, N WebSocket clients; latency from the \
         event's send to each client's read.\n\n\
         ```\nRATES=\"{rates}\" CLIENTS=\"{clients}\" DURATION={duration} OUT=target/bench/e2e \
         $EXTSTATUS_SHARED_DIR/bench/e2e/run_ours.sh\n```\n\n\
         Meanwhile `GET /healthz` is asked every {} ms on a connection of its own, through each \
         whole cell (start-up, the clients connecting, the stream and the drain); the column \
         gives the slowest answer in the cell (a refused connection, before the server \
         listens, is not an answer).\n",
        HEALTH_PROBE_EVERY.as_millis()
    );
    if let Some(h) = &history {
        let _ = writeln!(
            doc,
            "Every cell's store held a history before the stream (`BENCH_HISTORY={}`): {}.\n",
            h.entries, h.what
        );
    }
    let _ = writeln!(
        doc,
        "| R × N | lost | skipped through resyncs | p50 / p99 ms | api-server CPU % of 200 | peak RSS MB | `/healthz` max ms |\n|---|---|---|---|---|---|---|"
    );
    for r in &mut rows {
        let cell = format!(
            "R{}_N{}",
            r.get("rate").map_or(Value::Null, Clone::clone),
            r.get("clients").map_or(Value::Null, Clone::clone)
        );
        let slowest = cell_window(&dir.join(cell).join("samples.csv")).and_then(|(from, to)| {
            health
                .iter()
                .filter(|(at, _)| (from..=to).contains(at))
                .map(|(_, ms)| *ms)
                .reduce(f64::max)
        });
        if let Some(row) = r.as_object_mut() {
            row.insert(
                "healthz_max_ms".to_owned(),
                slowest.map_or(Value::Null, |ms| json!((ms * 10.0).round() / 10.0)),
            );
        }
    }
    for r in &rows {
        let f = |k: &str| {
            r.get(k)
                .filter(|v| !v.is_null())
                .map_or("—".to_owned(), Value::to_string)
        };
        let share = match (
            r.get("resync_skipped").and_then(Value::as_f64),
            r.get("expected").and_then(Value::as_f64),
        ) {
            (Some(skipped), Some(expected)) if expected > 0.0 => {
                format!(
                    "{} ({:.2} %)",
                    f("resync_skipped"),
                    100.0 * skipped / expected
                )
            }
            _ => f("resync_skipped"),
        };
        let _ = writeln!(
            doc,
            "| {} × {} | {} | {} | {} / {} | {} | {} | {} |",
            f("rate"),
            f("clients"),
            f("lost_excl_resync"),
            share,
            millis(r.get("p50_ms")),
            millis(r.get("p99_ms")),
            f("sut_cpu_pct_stream"),
            f("sut_hwm_mb"),
            f("healthz_max_ms"),
        );
    }
    let _ = writeln!(doc);
    Ok(json!({
        "rates": rates,
        "clients": clients,
        "history_entries": history.as_ref().map(|h| h.entries),
        "rows": rows,
        "table_md": table,
    }))
}

/// A latency in ms as the tables print it: three significant figures or whole milliseconds
/// (the harness writes four decimals), "—" when absent.
fn millis(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(ms) if ms < 10.0 => format!("{ms:.2}"),
        Some(ms) if ms < 100.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.0}"),
        None => "—".to_owned(),
    }
}

/// How often the end-to-end cells' `/healthz` is asked.
const HEALTH_PROBE_EVERY: Duration = Duration::from_millis(100);

/// Asks `GET /healthz` on the harness's server port every [`HEALTH_PROBE_EVERY`], each on a
/// new connection (as a load balancer does), until stopped; keeps (UNIX time in s, latency in
/// ms) of every answer. A connection refused (no server listening, between cells) is not one.
struct HealthProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl HealthProbe {
    fn start(port: &str) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let address = format!("127.0.0.1:{port}");
        let thread = std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                if health_once(&address) {
                    answers.push((at, started.elapsed().as_secs_f64() * 1000.0));
                }
                std::thread::sleep(HEALTH_PROBE_EVERY.saturating_sub(started.elapsed()));
            }
            answers
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<(f64, f64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One `GET /healthz` on a new connection; whether a whole HTTP response came back (within
/// 30 s).
fn health_once(address: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    let mut response = Vec::new();
    stream.write_all(request).is_ok()
        && stream.read_to_end(&mut response).is_ok()
        && response.starts_with(b"HTTP/1.1 ")
}

/// The first and last time (UNIX s) of a cell's `samples.csv` (its sampler runs from the
/// server's start to its stop).
fn cell_window(samples: &Path) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(samples).ok()?;
    let times: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    Some((*times.first()?, *times.last()?))
}

/// Writes the seeder wrapper of `BENCH_HISTORY` at `path`: a shell script that copies `store`
/// into the `--data-dir` it is given, then runs `real` with the same arguments.
fn write_seeder_wrapper(path: &Path, entries: u64, store: &Path, real: &Path) -> Result<()> {
    let quoted = |p: &Path| -> Result<String> {
        let text = p.to_string_lossy();
        if text.contains('\'') {
            bail!(
                "{} has a quote in its path, which the seeder wrapper cannot hold",
                p.display()
            );
        }
        Ok(format!("'{text}'"))
    };
    let script = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask bench` (BENCH_HISTORY={entries}): copies the store with the\n\
         # generated history into the --data-dir given, then runs the real seeder as asked.\n\
         set -eu\n\
         dir=\"\"\nprev=\"\"\n\
         for a in \"$@\"; do\n  if [ \"$prev\" = \"--data-dir\" ]; then dir=$a; fi\n  prev=$a\ndone\n\
         if [ -z \"$dir\" ]; then echo \"seeder-with-history.sh: no --data-dir in $*\" >&2; exit 2; fi\n\
         mkdir -p \"$dir\"\n\
         cp {store} \"$dir/extstatus.redb\"\n\
         exec {real} \"$@\"\n",
        store = quoted(store)?,
        real = quoted(real)?,
    );
    std::fs::write(path, script).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// A generated history for the end-to-end cells (`BENCH_HISTORY`).
struct Preloaded {
    /// The entries asked for.
    entries: u64,
    /// What was written, as the generator said it.
    what: String,
    /// The seeder wrapper that copies the history into a cell's data folder first.
    seeder: PathBuf,
}

/// With `BENCH_HISTORY=N`: a store of about N history entries for the harness's extensions
/// (`EXT_BASE`, `EXTENSIONS`: 1000 and 1000 by default, as the harness), made once a day under
/// `target/bench/`, and a seeder wrapper that copies it into the data folder it is given before
/// seeding. `None` without `BENCH_HISTORY`.
fn preloaded_history(root: &Path, out: &Path) -> Result<Option<Preloaded>> {
    let Some(raw) = std::env::var_os("BENCH_HISTORY") else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy();
    let number = |name: &str, text: &str| -> Result<u64> {
        text.trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{name} must be a whole number above 0, not {text:?}"))
    };
    let entries = number("BENCH_HISTORY", &raw)?;
    let env_or =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let first = number("EXT_BASE", &env_or("EXT_BASE", "1000"))?;
    let count = number("EXTENSIONS", &env_or("EXTENSIONS", "1000"))?;
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let dir = out.join(format!("history-{entries}-{first}-{count}-day{today}"));
    let done = dir.join("seeded.txt");
    if !done.is_file() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the unfinished {}", dir.display()))?;
        }
        check(cargo(root).args([
            "build",
            "--release",
            "-p",
            "store",
            "--example",
            "seed_history",
        ]))?;
        let said = output(
            Command::new(root.join("target/release/examples/seed_history"))
                .arg(&dir)
                .args([entries.to_string(), first.to_string(), count.to_string()]),
        )?;
        std::fs::write(&done, said.trim())
            .with_context(|| format!("writing {}", done.display()))?;
    }
    let what = std::fs::read_to_string(&done)
        .with_context(|| format!("reading {}", done.display()))?
        .trim()
        .to_owned();
    let seeder = out.join("seeder-with-history.sh");
    write_seeder_wrapper(
        &seeder,
        entries,
        &dir.join("extstatus.redb"),
        &root.join("target/release/seeder"),
    )?;
    eprintln!("bench: history preloaded in every cell: {what}");
    Ok(Some(Preloaded {
        entries,
        what,
        seeder,
    }))
}

/// Generates the realistic 200,000-packet stream and times `ami-dump --count` on it.
fn parser(root: &Path, doc: &mut String) -> Result<Value> {
    let generator = generator(root)?;
    let stream = root.join("target/ami200k.ami");
    if !stream.is_file() {
        check(
            Command::new("python3")
                .arg(&generator)
                .args(["-n", "200000", "-o"])
                .arg(&stream),
        )?;
    }
    let dump = root.join("target/release/ami-dump");
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(
            output(Command::new(&dump).arg("--count").arg(&stream))?
                .trim()
                .to_owned(),
        );
    }
    let _ = writeln!(
        doc,
        "### Parser\n\nFrame + parse of 200,000 realistic AMI packets in 4,096-byte reads, 3 runs:\n\n\
         ```\npython3 fixtures/bench/gen_ami.py -n 200000 -o target/ami200k.ami\n\
         ./target/release/ami-dump --count target/ami200k.ami\n```\n\n```\n{}\n```\n",
        runs.join("\n")
    );
    Ok(json!({ "command": "ami-dump --count target/ami200k.ami", "runs": runs }))
}

/// A server this process started; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /api/extensions` with 10,000 extensions under wrk, plain and gzip; the idle peak RSS
/// and `/healthz` latency of the same server.
fn rest(root: &Path, out: &Path, doc: &mut String) -> Result<Value> {
    let port = std::env::var("BENCH_REST_PORT").unwrap_or_else(|_| "18731".to_owned());
    let data = out.join("rest-data");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    let bin = root.join("target/release");
    let range = format!("100000-{}", 100_000 + REST_EXTENSIONS - 1);
    output(
        Command::new(bin.join("seeder"))
            .args(["--range", &range, "--department", "Bench", "--data-dir"])
            .arg(&data),
    )?;
    let log = std::fs::File::create(out.join("rest-server.log"))?;
    let mut cmd = Command::new(bin.join("api-server"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .stderr(log);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("EXTSTATUS_") || key == "MONGODB_URI" || key == "AMI_SECRET" {
            cmd.env_remove(key);
        }
    }
    eprintln!("bench: $ {cmd:?}");
    let server = Server(cmd.spawn().context("starting api-server")?);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&format!("{base}/healthz"), &[]).is_err() {
        if Instant::now() > deadline {
            bail!(
                "api-server did not answer /healthz within 30 s (see target/bench/rest-server.log)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Idle: started, 10,000 records loaded, nothing asked yet but health.
    std::thread::sleep(Duration::from_secs(3));
    let idle_rss_mb = peak_rss_mb(server.0.id())?;
    let mut health_ms = Vec::new();
    for _ in 0..20 {
        let t = curl(
            &format!("{base}/healthz"),
            &["-w", "%{time_total}", "-o", "/dev/null"],
        )?;
        health_ms.push(t.trim().parse::<f64>().unwrap_or(f64::NAN) * 1000.0);
    }
    let health_max_ms = health_ms.iter().copied().fold(0.0_f64, f64::max);

    let url = format!("{base}/api/extensions");
    let encoding = curl(
        &url,
        &["-H", "Accept-Encoding: gzip", "-D", "-", "-o", "/dev/null"],
    )?;
    if !encoding
        .to_ascii_lowercase()
        .contains("content-encoding: gzip")
    {
        bail!("GET /api/extensions with Accept-Encoding: gzip did not answer gzip: {encoding}");
    }
    let plain = wrk(&url, &[])?;
    let gzip = wrk(&url, &["-H", "Accept-Encoding: gzip"])?;
    let after_rss_mb = peak_rss_mb(server.0.id())?;
    drop(server);
    let _ = writeln!(
        doc,
        "### REST and memory\n\n`GET /api/extensions` (unfiltered) with {REST_EXTENSIONS} \
         extensions, against a release api-server without AMI (`seeder --range {range}`, then \
         `api-server --listen 127.0.0.1:{port} --data-dir DIR`):\n\n\
         ```\nwrk -t2 -c32 -d10s --latency http://127.0.0.1:{port}/api/extensions\n\
         wrk -t2 -c32 -d10s --latency -H 'Accept-Encoding: gzip' http://127.0.0.1:{port}/api/extensions\n```\n\n\
         | body | requests/s | p99 ms |\n|---|---|---|\n\
         | plain | {:.0} | {:.2} |\n| gzip | {:.0} | {:.2} |\n\n\
         api-server peak RSS (VmHWM) at idle with {REST_EXTENSIONS} extensions: **{idle_rss_mb:.1} MB** \
         ({after_rss_mb:.1} MB after the wrk runs). `/healthz`, 20 sequential requests with curl: \
         at most {health_max_ms:.1} ms.\n",
        plain.0, plain.1, gzip.0, gzip.1
    );
    Ok(json!({
        "extensions": REST_EXTENSIONS,
        "plain": { "requests_per_s": plain.0, "p99_ms": plain.1 },
        "gzip": { "requests_per_s": gzip.0, "p99_ms": gzip.1 },
        "idle_peak_rss_mb": idle_rss_mb,
        "peak_rss_after_wrk_mb": after_rss_mb,
        "healthz_max_ms": health_max_ms,
    }))
}

fn curl(url: &str, extra: &[&str]) -> Result<String> {
    let out = Command::new("curl")
        .args(["-fsS", "--noproxy", "*", "-m", "5"])
        .args(extra)
        .arg(url)
        .output()
        .context("starting curl")?;
    if !out.status.success() {
        bail!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The process's peak resident set (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kb / 1024.0)
}

/// Runs wrk and returns (requests/s, p99 ms).
fn wrk(url: &str, extra: &[&str]) -> Result<(f64, f64)> {
    let text = output(
        Command::new("wrk")
            .args(["-t2", "-c32", "-d10s", "--latency"])
            .args(extra)
            .arg(url),
    )?;
    eprintln!("{text}");
    if text.contains("Non-2xx") {
        bail!("wrk saw error answers from {url}:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no Requests/sec in wrk's output")?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| duration_ms(v.trim()))
        .context("no 99% latency in wrk's output (--latency)")?;
    Ok((rps, p99))
}

/// wrk's durations: `812.00us`, `12.34ms`, `1.02s`, `2.00m`.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(n / 1000.0),
        "ms" => Some(n),
        "s" => Some(n * 1000.0),
        "m" => Some(n * 60_000.0),
        _ => None,
    }
}

/// Replaces the generated section of `docs/performance.md` (or appends it).
fn write_doc(root: &Path, body: &str) -> Result<()> {
    let path = root.join("docs/performance.md");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let section = format!("{DOC_START}\n{body}{DOC_END}");
    let new = match (text.find(DOC_START), text.find(DOC_END)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{section}{}",
                &text[..start],
                &text[end + DOC_END.len()..]
            )
        }
        _ => format!(
            "{}\n## Latest `cargo xtask bench`\n\n{section}\n",
            text.trim_end()
        ),
    };
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
}

/// Runs the criterion benchmarks of `only` (or of every bench crate when empty).
fn criterion(root: &Path, only: &[String]) -> Result<()> {
    let crates: Vec<&str> = if only.is_empty() {
        BENCH_CRATES.to_vec()
    } else {
        only.iter().map(String::as_str).collect()
    };
    for krate in &crates {
        check(cargo(root).args(["bench", "-p", krate]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_print_with_three_figures_or_whole_milliseconds() {
        let ms = |v: Value| millis(Some(&v));
        assert_eq!(ms(json!(0.647)), "0.65");
        assert_eq!(ms(json!(14.6795)), "14.7");
        assert_eq!(ms(json!(3627.0075)), "3627");
        assert_eq!(ms(Value::Null), "—");
        assert_eq!(millis(None), "—");
    }

    /// Every crate with a `[[bench]]` target is in `BENCH_CRATES`, and nothing else is.
    #[test]
    fn bench_crates_are_the_crates_with_benchmarks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace");
        let mut found = Vec::new();
        for group in ["crates", "bins"] {
            for entry in std::fs::read_dir(root.join(group)).expect("workspace folder") {
                let manifest = entry.expect("entry").path().join("Cargo.toml");
                let Ok(text) = std::fs::read_to_string(&manifest) else {
                    continue;
                };
                if text.contains("[[bench]]") {
                    let name = text
                        .lines()
                        .find_map(|l| l.strip_prefix("name = "))
                        .expect("package name")
                        .trim_matches('"')
                        .to_owned();
                    found.push(name);
                }
            }
        }
        found.sort();
        let mut listed: Vec<String> = BENCH_CRATES.iter().map(|s| (*s).to_owned()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    /// The wrapper copies the store into the data folder named anywhere in its arguments, then
    /// runs the real seeder with the same arguments; without a data folder it refuses.
    #[test]
    fn the_seeder_wrapper_puts_the_history_in_place_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = tmp.path().join("history.redb");
        std::fs::write(&store, b"a store").expect("store");
        let wrapper = tmp.path().join("seeder.sh");
        write_seeder_wrapper(&wrapper, 5, &store, Path::new("/bin/echo")).expect("wrapper");
        let data = tmp.path().join("cell data");
        let out = Command::new(&wrapper)
            .args(["--range", "1000-1999", "--data-dir"])
            .arg(&data)
            .args(["--department", "Bench"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            std::fs::read(data.join("extstatus.redb")).expect("copied"),
            b"a store"
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.starts_with("--range 1000-1999 --data-dir "), "{said}");
        assert!(said.trim_end().ends_with("--department Bench"), "{said}");
        let refused = Command::new(&wrapper)
            .args(["--range", "1-2"])
            .output()
            .expect("run");
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("no --data-dir"));
    }

    #[test]
    fn wrk_durations() {
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("12.34ms"), Some(12.34));
        assert_eq!(duration_ms("1.50s"), Some(1500.0));
        assert_eq!(duration_ms("12.34"), None);
        assert_eq!(duration_ms("3.0h"), None);
    }
}
