//! fogg: the broker binary. Parses the command line, loads conf.d, builds the
//! compiled-in backends, starts the broker and waits for SIGTERM / SIGINT.
//!
//! Exit status: 0 after a clean shutdown or a passing `--check`; 2 for a
//! configuration error (as for a command-line error); 1 when startup fails.

mod cli;
mod config_loader;
mod error;
mod logging;
mod mask;
mod services;
mod signals;
mod validate;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fogg_broker::{InvalidateScope, Services, StartError};

use crate::cli::{Cli, ConfigSource};
use crate::config_loader::{Loaded, Provenance};
use crate::error::{ConfigError, Key};
use crate::mask::mask_passwords;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fogg: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime because a backend factory may spawn tasks (a pool's
    // reaper, say) when it builds an instance; `--check` builds them too.
    let prepared = {
        let _guard = runtime.enter();
        prepare(&cli)
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("fogg: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("configuration OK ({})", prepared.describe);
        return ExitCode::SUCCESS;
    }
    match runtime.block_on(run(prepared)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fogg: {}", mask_passwords(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// A checked configuration with its backends built, ready to start.
struct Prepared {
    loaded: Loaded,
    services: Services,
    /// Where the configuration came from, for humans.
    describe: String,
}

fn prepare(cli: &Cli) -> Result<Prepared, ConfigError> {
    let (loaded, describe) = match cli.config_source() {
        ConfigSource::Dir(dir) => {
            let loaded = config_loader::load_dir(&dir)?;
            if loaded.files.is_empty() {
                tracing::warn!(dir = %dir.display(), "no *.toml files; using the built-in defaults");
            }
            let describe = format!("{} file(s) from {}", loaded.files.len(), dir.display());
            (loaded, describe)
        }
        ConfigSource::BuiltIn => (config_loader::builtin(), "built-in defaults".to_owned()),
    };
    for file in &loaded.files {
        tracing::debug!(file = %file.display(), "configuration file loaded");
    }
    let registry = services::registry();
    validate::check(&loaded.config, &loaded.provenance, &registry)?;
    let storage = if cli.check {
        services::Storage::CheckOnly
    } else {
        services::Storage::Open
    };
    let services = services::build(&loaded.config, &loaded.provenance, &registry, storage)?;
    Ok(Prepared {
        loaded,
        services,
        describe,
    })
}

async fn run(prepared: Prepared) -> anyhow::Result<()> {
    let Prepared {
        loaded: Loaded {
            config, provenance, ..
        },
        services,
        describe,
    } = prepared;
    let shutdown = signals::Shutdown::install().context("installing signal handlers")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "fogg starting with {describe}"
    );
    let running = fogg_broker::start(config, services)
        .await
        .map_err(|e| start_error(e, &provenance))?;
    for (name, addr) in running.local_addrs() {
        tracing::info!("listening on {addr} (listener {name})");
        // A fixed, filter-independent line for scripts and tests that start
        // fogg on port 0 and need the port it got.
        eprintln!("fogg: listening {name} {addr}");
    }
    let handle = running.handle();
    let signal = shutdown
        .wait(|| {
            tracing::info!(
                "SIGHUP received; reloading TLS certificates and invalidating cached ACL answers"
            );
            running.reload_certificates();
            // Every connection fetches its ACL answers again at its next
            // PUBLISH or SUBSCRIBE; the shared [auth] cache is emptied. The
            // handle logs how many clients that concerned.
            let handle = handle.clone();
            tokio::spawn(async move {
                handle.invalidate_acl(InvalidateScope::All).await;
            });
        })
        .await;
    tracing::info!("{signal} received; shutting down");
    running.shutdown().await;
    Ok(())
}

/// Startup errors about a listener also name the file that configured it.
fn start_error(e: StartError, provenance: &Provenance) -> anyhow::Error {
    let key = match &e {
        StartError::Bind { index, .. } => Some(Key::of(&["listeners"]).index(*index).field("bind")),
        StartError::UnsupportedListener { index, key, .. } => {
            Some(Key::of(&["listeners"]).index(*index).field(key))
        }
        StartError::Transport { index, source, .. } => Some(
            Key::of(&["listeners"])
                .index(*index)
                .field(source.config_key().unwrap_or("kind")),
        ),
        StartError::Overload { key, .. } => Some(Key::of(&["overload", key])),
        _ => None,
    };
    match key {
        Some(key) => anyhow::anyhow!("cannot start: {}: {e}", provenance.origin(&key)),
        None => anyhow::Error::new(e).context("cannot start"),
    }
}
