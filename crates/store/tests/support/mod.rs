//! What the store's integration test binaries (`contract`, `cluster`) share: whether a MongoDB
//! run happens, and a throw-away database name for each case.

use std::io::Write as _;

/// Says, on stderr, that the MongoDB run of `suite` did not happen, and why.
pub fn skipped(suite: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "store {suite} tests against MongoDB skipped: {why}"
    );
}

/// `TEST_MONGODB_URI`, or `None` (said on stderr) when it is not set.
#[cfg(feature = "mongodb")]
pub fn mongodb_uri(suite: &str) -> Option<String> {
    match std::env::var("TEST_MONGODB_URI") {
        Ok(uri) if !uri.trim().is_empty() => Some(uri),
        _ => {
            skipped(suite, "TEST_MONGODB_URI is not set");
            None
        }
    }
}

/// A database name for one case: `prefix`, the process, the time and the case, cut to the 63
/// bytes MongoDB allows (every part is ASCII).
#[cfg(feature = "mongodb")]
pub fn throwaway_database(prefix: &str, case: &str) -> String {
    let stamp = chrono::Utc::now().timestamp_millis();
    let name = format!("{prefix}_{}_{stamp}_{case}", std::process::id());
    name.chars().take(63).collect()
}

/// Runs a case's clean-up (dropping its database), again up to twice after a short pause when
/// it fails: a MongoDB-wire server busy with every other test can reset a connection
/// ("SystemOverloadedError"), which says nothing about the case itself.
#[cfg(feature = "mongodb")]
pub async fn clean_up<F, Fut>(mut attempt: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut last = None;
    for pause_ms in [0, 250, 1000] {
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("three attempts"))
}
