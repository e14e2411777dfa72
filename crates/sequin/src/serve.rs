//! `sequin serve`: the HTTP server over a store, with live segments.

use anyhow::{Context, Result, anyhow};
use rand::Rng;
use sequin_core::time::parse_duration;
use sequin_engine::live::LiveOptions;
use sequin_server::{Keys, Server, ServerConfig, router};

use crate::cli::ServeArgs;

/// A key given, or a fresh random one (printed, so the operator can use it).
fn key_or_generate(given: Option<String>, what: &str, flag: &str) -> String {
    match given.filter(|k| !k.is_empty()) {
        Some(k) => k,
        None => {
            let mut rng = rand::rng();
            let key: String = (0..24)
                .map(|_| {
                    let c = rng.random_range(0..36u8);
                    (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
                })
                .collect();
            eprintln!("{what} key (generated; set {flag} to choose one): {key}");
            key
        }
    }
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let keys = Keys {
        write: key_or_generate(a.write_key, "write", "SEQUIN_WRITE_KEY"),
        read: key_or_generate(a.read_key, "read", "SEQUIN_READ_KEY"),
        admin: key_or_generate(a.admin_key, "admin", "SEQUIN_ADMIN_KEY"),
    };
    let config = ServerConfig {
        store: a.store.clone(),
        segments: a.segments.clone(),
        keys,
        live: LiveOptions {
            session_gap: parse_duration(&a.session_gap)
                .map_err(anyhow::Error::msg)
                .context("--session-gap")?,
            lateness: parse_duration(&a.lateness)
                .map_err(anyhow::Error::msg)
                .context("--lateness")?,
        },
        idle_advance: !a.no_idle_advance,
        memtable_bytes: a.memtable_mb << 20,
        checkpoint_every: std::time::Duration::from_micros(
            parse_duration(&a.checkpoint_every)
                .map_err(anyhow::Error::msg)
                .context("--checkpoint-every")?
                .max(1) as u64,
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let server = Server::start(&config).map_err(|e| anyhow!(e))?;
        {
            let engine = server.state.live.engine.read().expect("engine lock");
            eprintln!(
                "live: {} segments from {}, backfilled {} users in {:.1?}",
                engine.programs().count(),
                server.definitions_from.display(),
                engine.users(),
                started.elapsed()
            );
        }
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        eprintln!(
            "listening on http://{}",
            listener.local_addr().context("local address")?
        );
        axum::serve(listener, router(server.state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}
