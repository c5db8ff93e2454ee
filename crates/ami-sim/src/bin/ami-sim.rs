//! `ami-sim`: the AMI simulator as its own binary, for demos without Asterisk and for load
//! tests (`--rate` sets the changes per second across all agents).

use std::net::SocketAddr;

use ami_sim::{SimAgent, SimConfig, Simulator};
use anyhow::{Context, bail};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// A simulated Asterisk manager interface (AMI 9.0.0, Asterisk 20) whose agents ring, talk,
/// hold and log off on their own.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "AMI_SIM_LISTEN", default_value = "127.0.0.1:5038")]
    listen: SocketAddr,
    /// Manager user name clients log in with.
    #[arg(long, env = "AMI_SIM_USER", default_value = "extstatus")]
    user: String,
    /// Manager secret (plain `Secret` or MD5 challenge login).
    #[arg(
        long,
        env = "AMI_SIM_SECRET",
        default_value = "extstatus",
        hide_env_values = true
    )]
    secret: String,
    /// Number of agents, extensions 1001 upwards (default: the 40 sample agents 1001-1040).
    #[arg(long, conflicts_with = "range")]
    agents: Option<u32>,
    /// Extension range of the agents, e.g. `1001-1040` (inclusive).
    #[arg(long)]
    range: Option<String>,
    /// Call-cycle changes per second across all agents; 0 keeps every agent still.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seed of the call model, to replay a run; random when absent (and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Hints name SIP phones (`PJSIP/1001`) instead of custom devices (`Custom:1001`).
    #[arg(long)]
    pjsip: bool,
    /// Keep the call center still: no queue members, pauses, presence or queued calls, only
    /// the call cycle.
    #[arg(long)]
    no_call_center: bool,
    /// Dialplan context of the hints.
    #[arg(long, default_value = ami_sim::DEFAULT_CONTEXT)]
    context: String,
}

/// The most agents one simulator is started with.
const MAX_AGENTS: u64 = 100_000;

fn extensions(args: &Args) -> anyhow::Result<Vec<String>> {
    let (first, last) = match (&args.range, args.agents) {
        (Some(range), _) => {
            let (a, b) = range
                .split_once('-')
                .with_context(|| format!("--range {range:?} is not FIRST-LAST"))?;
            let a: u64 = a.trim().parse().context("--range: first extension")?;
            let b: u64 = b.trim().parse().context("--range: last extension")?;
            if b < a {
                bail!("--range {range:?}: the last extension is below the first");
            }
            (a, b)
        }
        (None, Some(0)) => bail!("--agents must be at least 1"),
        (None, Some(n)) => (1001, 1000 + u64::from(n)),
        (None, None) => {
            return Ok(ami_sim::sample_agents()
                .map(|a| a.extension.to_owned())
                .collect());
        }
    };
    if last - first + 1 > MAX_AGENTS {
        bail!("at most {MAX_AGENTS} agents");
    }
    Ok((first..=last).map(|n| n.to_string()).collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let agents: Vec<SimAgent> = extensions(&args)?
        .into_iter()
        .map(|e| {
            if args.pjsip {
                SimAgent::pjsip(e)
            } else {
                SimAgent::custom(e)
            }
        })
        .collect();
    let count = agents.len();
    let mut config = SimConfig::new(args.user, args.secret, agents);
    config.rate_per_sec = args.rate;
    config.seed = args.seed;
    config.context = args.context;
    config.call_center = !args.no_call_center;
    let simulator = Simulator::new(config)?;
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "ami-sim listens beyond loopback; anyone who can reach it can log in with the configured secret");
    }
    let cancel = CancellationToken::new();
    let (addr, handle) = simulator
        .spawn(args.listen, cancel.clone())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "ami-sim listening on {addr} ({count} agents, {} changes/s, seed {})",
        args.rate,
        simulator.seed()
    );
    shutdown_signal().await;
    tracing::info!("ami-sim: shutting down");
    cancel.cancel();
    handle.await.context("simulator task")??;
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
