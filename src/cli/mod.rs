//! Command-line parsing, output and exit codes. The library never sees a flag.

mod display;
mod ui;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k5up::engine::{Engine, Settings, UploadRequest};
use k5up::journal::Root;
use k5up::plan::ManifestKind;
use k5up::progress::Progress;
use k5up::retry::Policy;
use k5up::swift::{ClientOptions, Swift};
use k5up::{ErrorKind, Result, units};

const EXIT_CODES: &str = "\
Exit codes:
  0   done
  2   bad usage or bad input (missing file, invalid name, wrong credentials, unknown job)
  75  interrupted, or transient failures outlasted --retry-for: `k5up resume JOB` continues
  1   any other failure

Credentials come from the environment: OS_STORAGE_URL+OS_AUTH_TOKEN, OS_CLOUD (clouds.yaml),
OS_AUTH_URL+OS_USERNAME/... (an OpenStack RC file), or ST_AUTH+ST_USER+ST_KEY.";

/// Resumable, verified uploads of large disk images into OpenStack Swift.
#[derive(Debug, Parser)]
#[command(name = "k5up", version, after_help = EXIT_CODES)]
struct Cli {
    /// Journal directory [default: $XDG_STATE_HOME/k5up or ~/.local/state/k5up]
    #[arg(long, env = "K5UP_JOURNAL", global = true, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Extra CA certificates (PEM bundle) for a private CA [env: OS_CACERT]
    #[arg(long, global = true, value_name = "PEM")]
    cacert: Option<PathBuf>,
    /// Do not verify TLS certificates (dangerous)
    #[arg(long, global = true)]
    insecure: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Upload FILE as CONTAINER/OBJECT (running the same command again continues the same job)
    Upload(UploadArgs),
    /// Continue a job after a crash, a kill, a reboot or a network failure
    Resume {
        /// Job id (see `k5up jobs`)
        job: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show a job's progress (all jobs without JOB); works while an upload runs
    Status {
        /// Job id
        job: Option<String>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// List the jobs in the journal
    Jobs {
        /// Machine-readable output (a JSON array)
        #[arg(long)]
        json: bool,
    },
    /// Delete a job's uploaded segments and its journal entry
    Abort {
        /// Job id
        job: String,
        /// For a completed job, also delete the uploaded object (otherwise it is kept)
        #[arg(long)]
        purge: bool,
    },
    /// Compare the server's manifest and segments with the journal
    Verify {
        /// Job id
        job: String,
        /// Also read the object back and compare its MD5 with the local file
        #[arg(long)]
        deep: bool,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ManifestArg {
    Slo,
    Dlo,
}

#[derive(Debug, Args)]
struct UploadArgs {
    /// The image file
    file: PathBuf,
    /// Target container (created if missing; segments go to CONTAINER_segments)
    #[arg(short, long)]
    container: String,
    /// Target object name [default: the file's name]
    #[arg(short, long)]
    object: Option<String>,
    /// Segment size, e.g. 512MiB [default: 256MiB, larger for huge files so one manifest holds them]
    #[arg(long, value_parser = units::parse_size)]
    segment_size: Option<u64>,
    /// Manifest kind [default: slo when the server offers it]
    #[arg(long, value_enum)]
    manifest: Option<ManifestArg>,
    /// Print the plan (segment size and count, manifest, server limits, job id) and stop
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Segments uploaded in parallel
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Keep retrying transient failures of one request for this long (e.g. 30m, 6h)
    #[arg(long, default_value = "2h", value_parser = units::parse_duration)]
    retry_for: Duration,
    /// Abandon and retry a PUT that makes no progress for this long
    #[arg(long, default_value = "60s", value_parser = units::parse_duration)]
    stall_timeout: Duration,
    /// Cap the upload rate, e.g. 20MiB (per second, all segments together)
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    bwlimit: Option<u64>,
    /// No progress bar (periodic log lines instead)
    #[arg(long)]
    no_progress: bool,
}

/// Runs the command and maps the outcome to an exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("k5up: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(run(cli));
    // Reader threads of abandoned segments finish on their own; do not wait for them.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("k5up: error: {e}");
            ExitCode::from(e.kind.exit_code() as u8)
        }
    }
}

fn env_map() -> HashMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

async fn run(cli: Cli) -> Result<()> {
    let root = Root::new(cli.journal.clone())?;
    match cli.cmd {
        Cmd::Status { job, json } => {
            ui::init_tracing(cli.verbose, false);
            display::status(&root, job.as_deref(), json)
        }
        Cmd::Jobs { json } => {
            ui::init_tracing(cli.verbose, false);
            display::status(&root, None, json)
        }
        Cmd::Upload(ref a) => {
            let settings = &a.run;
            let bar = ui::init_tracing(cli.verbose, !settings.no_progress && !a.dry_run);
            let engine = engine(&cli, root, settings)?;
            let req = UploadRequest {
                file: a.file.clone(),
                container: a.container.clone(),
                object: a.object.clone(),
                segment_size: a.segment_size,
                manifest: a.manifest.map(|m| match m {
                    ManifestArg::Slo => ManifestKind::Slo,
                    ManifestArg::Dlo => ManifestKind::Dlo,
                }),
            };
            if a.dry_run {
                let (_, _, planned) = engine.plan(&req).await?;
                display::dry_run(&planned);
                return Ok(());
            }
            let progress = ui::spawn_progress(engine.progress.clone(), bar);
            let r = engine.upload(&req).await;
            progress.finish();
            display::finished(r?)
        }
        Cmd::Resume { ref job, run: ref settings } => {
            let bar = ui::init_tracing(cli.verbose, !settings.no_progress);
            let engine = engine(&cli, root, settings)?;
            let progress = ui::spawn_progress(engine.progress.clone(), bar);
            let r = engine.resume(job).await;
            progress.finish();
            display::finished(r?)
        }
        Cmd::Abort { ref job, purge } => {
            ui::init_tracing(cli.verbose, false);
            let engine = engine(&cli, root, &default_run())?;
            println!("{}", engine.abort(job, purge).await?);
            Ok(())
        }
        Cmd::Verify { ref job, deep, json } => {
            ui::init_tracing(cli.verbose, false);
            let engine = engine(&cli, root, &default_run())?;
            let report = engine.verify(job, deep).await?;
            display::verify(&report, json)
        }
    }
}

fn default_run() -> RunArgs {
    RunArgs {
        concurrency: 4,
        retry_for: Duration::from_secs(600),
        stall_timeout: Duration::from_secs(60),
        bwlimit: None,
        no_progress: true,
    }
}

/// A rate: a size per second (`20MiB`, `20MiB/s`, `500k`); at least 1 KiB/s.
fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let r = units::parse_size(s.trim().trim_end_matches("/s"))?;
    if r < 1024 { Err(format!("`{s}`: a rate below 1 KiB/s is not useful")) } else { Ok(r) }
}

fn engine(cli: &Cli, root: Root, a: &RunArgs) -> Result<Engine> {
    let (creds, mut tls) = k5up::swift::creds::from_env(&env_map())?;
    if let Some(c) = &cli.cacert {
        tls.cacert = Some(c.clone());
    }
    tls.insecure |= cli.insecure;
    let mut policy = Policy { retry_for: a.retry_for, ..Policy::default() };
    // Hidden knob for tests: a shorter first backoff delay.
    if let Some(ms) = std::env::var("K5UP_BACKOFF_INITIAL_MS").ok().and_then(|v| v.parse().ok()) {
        policy.initial = Duration::from_millis(ms);
        policy.max_interval = policy.max_interval.min(Duration::from_millis(ms * 8));
    }
    let opts = ClientOptions { tls, policy, connect_timeout: Duration::from_secs(20) };
    let swift = Swift::new(creds, &opts)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    spawn_signal_handler(tx);
    Ok(Engine {
        root,
        swift,
        settings: Settings { concurrency: a.concurrency as usize, stall_timeout: a.stall_timeout, bwlimit: a.bwlimit },
        progress: Arc::new(Progress::default()),
        cancel: rx,
    })
}

/// First Ctrl-C or SIGTERM: stop cleanly (exit 75). Second: stop at once (exit 75).
fn spawn_signal_handler(tx: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                eprintln!("\nk5up: interrupted: finishing the journal (press Ctrl-C again to stop at once)");
                let _ = tx.send(true);
            } else {
                std::process::exit(ErrorKind::Resumable.exit_code());
            }
        }
    });
}
