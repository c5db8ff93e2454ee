//! The `seeder` command: reads the environment and the command line, runs [`seeder::run`], and
//! turns its outcome into the exit status (0 loaded, 1 rows rejected or writes failed, 2 nothing
//! done).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let mut cli = seeder::Cli::parse();
    // MONGODB_URI is accepted without the prefix, as the api-server accepts it; --api wins.
    if cli.api.is_none() {
        cli.store = cli.store.with_plain_env(|name| std::env::var(name).ok());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seeder: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match runtime.block_on(seeder::run(&cli, &mut out, &mut err)) {
        Ok(summary) => ExitCode::from(summary.exit_code()),
        Err(e) => {
            eprintln!("seeder: {}", report(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once.
fn report(e: &anyhow::Error) -> String {
    store::cli::causes(e.as_ref())
}
