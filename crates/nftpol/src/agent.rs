//! `nftpol agent`: flags, logging format, the Kubernetes client, the kernel
//! dataplane, the HTTP port and signal handling, wired to `nftpol_agent`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use nftpol_agent::http::{self, Health};
use nftpol_agent::metrics::Metrics;
use nftpol_agent::{Agent, AgentConfig};
use nftpol_ruleset::compile::{CompileOptions, DenyAction, UnknownLocalPods};
use tokio::sync::watch;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up `tracing` on stderr; levels come from `RUST_LOG` (default info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `--deny`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Deny {
    /// Drop silently.
    Drop,
    /// Reject with ICMP administratively prohibited.
    Reject,
}

/// `--unknown-local-pods`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Unknown {
    /// Drop traffic of addresses in this node's pod CIDRs that no known pod owns (fail closed).
    Drop,
    /// Let it pass as if unisolated.
    Allow,
}

/// Flags of `nftpol agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The node this agent enforces for (the downward API sets NODE_NAME).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Verdict for isolated traffic no policy allows.
    #[arg(long, value_enum, default_value = "drop")]
    deny: Deny,
    /// Traffic of addresses in this node's pod CIDRs that no known pod owns.
    #[arg(long, value_enum, default_value = "drop")]
    unknown_local_pods: Unknown,
    /// Bounded delay from the first event of a burst to its reconcile, in milliseconds.
    #[arg(long, default_value_t = 20)]
    coalesce_ms: u64,
    /// Address of the HTTP port (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9808")]
    listen: SocketAddr,
}

impl AgentArgs {
    fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(self.node_name.clone());
        config.compile = CompileOptions {
            deny: match self.deny {
                Deny::Drop => DenyAction::Drop,
                Deny::Reject => DenyAction::Reject,
            },
            unknown_local_pods: match self.unknown_local_pods {
                Unknown::Drop => UnknownLocalPods::Drop,
                Unknown::Allow => UnknownLocalPods::Allow,
            },
            ..CompileOptions::default()
        };
        config.coalesce_delay = Duration::from_millis(self.coalesce_ms);
        config
    }
}

/// Completes on SIGTERM or SIGINT.
async fn terminated() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping; the ruleset stays in place"),
        _ = int.recv() => tracing::info!("SIGINT: stopping; the ruleset stays in place"),
    }
    Ok(())
}

/// Runs the agent until SIGTERM. The ruleset stays in the kernel afterwards;
/// `nftpol cleanup` removes it.
pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .context("finding the Kubernetes API (in-cluster or KUBECONFIG)")?;
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let dataplane = crate::open_kernel()?;
        let metrics = Arc::new(Metrics::new());
        let health = Health::default();
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let (stop, stopped) = watch::channel(false);
        let signals = tokio::spawn(async move {
            let result = terminated().await;
            // No receiver left means everything has stopped already.
            let _ = stop.send(true);
            result
        });
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            // An error means the sender is gone: stop as well.
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let server = tokio::spawn(http::serve(
            listener,
            Arc::clone(&metrics),
            health.clone(),
            until_stopped(stopped.clone()),
        ));
        tracing::info!(listen = %args.listen, node = %args.node_name, "nftpol agent starting");
        let agent = Agent::new(args.config(), dataplane, metrics, health);
        let outcome = agent.run(client, until_stopped(stopped)).await;
        signals.abort();
        server.abort();
        outcome.context("agent")?;
        Ok(ExitCode::SUCCESS)
    })
}
