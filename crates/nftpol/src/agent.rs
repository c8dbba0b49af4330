//! `nftpol agent`: flags, logging format, the Kubernetes client, the kernel
//! dataplane, the HTTP port and signal handling, wired to `nftpol_agent`.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use nftpol_agent::http::{self, Health};
use nftpol_agent::metrics::Metrics;
use nftpol_agent::verdict_log::{LogDirectory, OutputTarget, VerdictLogConfig, VerdictLogReader};
use nftpol_agent::{Agent, AgentConfig};
use nftpol_netlink::KernelDataplane;
use nftpol_ruleset::compile::{CompileOptions, DenyAction, UnknownLocalPods};
use nftpol_ruleset::rejudge::{Generation, MarkBits, Rejudge};
use nftpol_ruleset::verdict_log::{VerdictLogMode, VerdictLogOptions, DEFAULT_GROUP};
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
/// Colours only when stderr is a terminal: a log sent to a file or a pipe
/// (`nftpol lab run … 2>log`, a container runtime) carries no escape codes.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
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

/// `--verdict-log`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VerdictLog {
    /// No verdict logs.
    Off,
    /// Log the first packet of every denied connection.
    Deny,
    /// Log the first packet of every denied and every allowed connection.
    All,
}

impl From<VerdictLog> for VerdictLogMode {
    fn from(mode: VerdictLog) -> Self {
        match mode {
            VerdictLog::Off => VerdictLogMode::Off,
            VerdictLog::Deny => VerdictLogMode::Deny,
            VerdictLog::All => VerdictLogMode::All,
        }
    }
}

/// The verdict log flags, shared by `nftpol agent` and the commands that
/// compile as it does.
#[derive(Debug, Clone, Args)]
pub struct VerdictLogArgs {
    /// Which connections' first packets the kernel logs to NFLOG.
    #[arg(long, value_enum, default_value = "deny")]
    pub verdict_log: VerdictLog,
    /// The NFLOG group (ulogd2 `[log1] group=100`, `tcpdump -i nflog:100`).
    #[arg(long, default_value_t = DEFAULT_GROUP)]
    pub nflog_group: u16,
}

impl VerdictLogArgs {
    /// The compiler's verdict log settings.
    pub fn options(&self) -> VerdictLogOptions {
        VerdictLogOptions {
            mode: self.verdict_log.into(),
            group: self.nflog_group,
        }
    }
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
    /// After a commit that may take permission away, judge the next packet
    /// of every established flow again (false: established flows keep going).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    rejudge_established: bool,
    /// The connection-mark bits re-judging owns: a contiguous run of an
    /// even number of bits (egress generation low half, ingress high half).
    #[arg(long, default_value_t = MarkBits::default(), value_parser = parse_mark_bits)]
    ct_mark_bits: MarkBits,
    #[command(flatten)]
    verdict_log: VerdictLogArgs,
    /// Where verdict lines go: `stdout`, or a file opened append-only and
    /// reopened on SIGHUP (logrotate).
    #[arg(long, default_value = "stdout")]
    verdict_log_output: String,
}

fn parse_mark_bits(text: &str) -> Result<MarkBits, String> {
    text.parse()
        .map_err(|error: nftpol_ruleset::rejudge::MarkBitsError| error.to_string())
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
            rejudge: self.rejudge_established.then_some(Rejudge {
                marks: self.ct_mark_bits,
                generation: Generation::FIRST,
            }),
            verdict_log: self.verdict_log.options(),
        };
        config.coalesce_delay = Duration::from_millis(self.coalesce_ms);
        config
    }
}

/// Warns, once at start, of every other table in this namespace that tests
/// or sets the connection-mark bits re-judging owns.
fn warn_of_mark_users(dataplane: &mut KernelDataplane, bits: MarkBits) {
    match dataplane.ct_mark_uses(bits.mask()) {
        Ok(uses) => {
            for found in uses {
                tracing::warn!(
                    family = found.family,
                    table = %found.table,
                    chain = %found.chain,
                    access = ?found.access,
                    ct_mark_bits = %bits,
                    "another table uses the connection-mark bits re-judging owns; choose others with --ct-mark-bits"
                );
            }
        }
        Err(error) => tracing::warn!(
            error = %error,
            "could not check other tables for use of the connection-mark bits"
        ),
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

/// Reopens the verdict log output on every SIGHUP (logrotate).
async fn reopen_on_hangup(reader: Arc<VerdictLogReader>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    while hangups.recv().await.is_some() {
        reader.reopen();
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
        let mut dataplane = crate::open_kernel()?;
        if args.rejudge_established {
            warn_of_mark_users(&mut dataplane, args.ct_mark_bits);
        }
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
        let mut config = args.config();
        let reader = match args.verdict_log.verdict_log {
            VerdictLog::Off => None,
            VerdictLog::Deny | VerdictLog::All => {
                let directory = LogDirectory::default();
                config.log_directory = Some(directory.clone());
                let output = match args.verdict_log_output.as_str() {
                    "stdout" => OutputTarget::Stdout,
                    path => OutputTarget::File(path.into()),
                };
                let reader = VerdictLogReader::spawn(
                    VerdictLogConfig {
                        group: args.verdict_log.nflog_group,
                        output,
                    },
                    directory,
                    Arc::clone(&metrics),
                    || Ok(()),
                )
                .with_context(|| {
                    format!("opening the verdict log output {}", args.verdict_log_output)
                })?;
                Some(Arc::new(reader))
            }
        };
        let hangups = reader
            .clone()
            .map(|reader| tokio::spawn(reopen_on_hangup(reader)));
        let agent = Agent::new(config, dataplane, metrics, health);
        let outcome = agent.run(client, until_stopped(stopped)).await;
        if let Some(hangups) = hangups {
            hangups.abort();
            // Cancelled (or failed installing its handler, already logged
            // nowhere else): either way it holds no reader any more.
            if let Ok(Err(error)) = hangups.await {
                tracing::warn!(error = %error, "SIGHUP handler");
            }
        }
        if let Some(reader) = reader.and_then(Arc::into_inner) {
            reader.stop();
        }
        signals.abort();
        server.abort();
        outcome.context("agent")?;
        Ok(ExitCode::SUCCESS)
    })
}
