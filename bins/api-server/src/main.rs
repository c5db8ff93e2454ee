//! api-server binary: reads flags, environment and the optional TOML file, installs logging,
//! binds the listener, turns SIGINT/SIGTERM into a graceful shutdown, and runs the library.

mod telemetry;

use std::process::ExitCode;

use api_server::{Args, Config};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // An empty `EXTSTATUS_*` variable counts as unset.
    let command = store::cli::without_blank_env(<Args as clap::CommandFactory>::command());
    let args = match <Args as clap::FromArgMatches>::from_arg_matches(&command.get_matches()) {
        Ok(args) => args.with_plain_env(|name| std::env::var(name).ok()),
        Err(e) => e.exit(),
    };
    let file = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("api-server: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let config = match Config::resolve(args, file.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("api-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(config.log_format, &config.log) {
        eprintln!("api-server: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("api-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = report(&e);
            tracing::error!("{text}");
            eprintln!("api-server: {text}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once.
fn report(e: &anyhow::Error) -> String {
    store::cli::causes(e.as_ref())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addrs = config.listen_addrs()?;
    let listener = std::net::TcpListener::bind(&addrs[..])
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let server = api_server::start(config, listener, shutdown).await?;
    let url = format!("http://{}/", server.addr);
    tracing::info!(%url, "extstatus is serving");
    server.wait().await?;
    Ok(())
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received; shutting down gracefully");
    shutdown.cancel();
}
