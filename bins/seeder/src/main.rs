//! The `seeder` command: reads the environment and the command line, runs [`seeder::run`], and
//! turns its outcome into the exit status (0 loaded, 1 a write failed, 2 nothing written: bad
//! arguments, a refused row, the target unavailable or the token refused).

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match seeder::Cli::try_parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        // Help and version exit 0, a bad command line 2.
        Err(e) => e.exit(),
    };
    // MONGODB_URI is accepted without the prefix, as the api-server accepts it.
    let cli = cli.with_plain_env(|name| std::env::var(name).ok());
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
