//! Command-line parsing, output and exit codes. The library never sees a flag.

mod args;
mod display;
mod out;
mod ui;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, ShareRequest, UploadRequest};
use crate::import::k5;
use crate::journal::Root;
use crate::plan::ManifestKind;
use crate::retry::Policy;
use crate::swift::{ClientOptions, Swift};
use crate::transfer::progress::Progress;
use crate::{ErrorKind, Result};
use args::{Cli, Cmd, ConnArgs, ManifestArg, RunArgs, given};

/// Runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli.implied_import(&matches);
    cli.given = given(&cli.cmd, &matches);
    cli.conn = match &cli.cmd {
        Cmd::Upload(a) => a.conn.clone(),
        Cmd::Resume { conn, .. } | Cmd::Import { conn, .. } | Cmd::Abort { conn, .. } | Cmd::Verify { conn, .. } => {
            conn.clone()
        }
        Cmd::Share { conn, .. } | Cmd::Accept { conn, .. } => conn.clone(),
        Cmd::Status { .. } | Cmd::Jobs { .. } | Cmd::Completions { .. } | Cmd::Man { .. } => ConnArgs::default(),
    };
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
            eprintln!("k5up: error: {}", e.render(out::clean));
            ExitCode::from(e.kind.exit_code() as u8)
        }
    }
}

fn env_map() -> HashMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

async fn run(cli: Cli) -> Result<()> {
    // These need no journal.
    match cli.cmd {
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "k5up", &mut buf);
            out::out!("{}", String::from_utf8_lossy(&buf).trim_end());
            return Ok(());
        }
        Cmd::Man { ref dir } => return man(dir.as_deref()),
        _ => {}
    }
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
                import: a.import.spec(&cli, true)?,
                digests: a.import.digests.clone(),
                replace: a.replace,
                base: a.base.as_deref().map(crate::engine::base::parse).transpose()?,
                share: a.import.share(),
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
        Cmd::Resume { ref job, run: ref settings, .. } => {
            let bar = ui::init_tracing(cli.verbose, !settings.no_progress);
            let engine = engine(&cli, root, settings)?;
            let progress = ui::spawn_progress(engine.progress.clone(), bar);
            let r = engine.resume(job).await;
            progress.finish();
            display::finished(r?)
        }
        Cmd::Import { ref job, ref import, run: ref settings, .. } => {
            let bar = ui::init_tracing(cli.verbose, !settings.no_progress);
            let spec = import.spec(&cli, false)?;
            let engine = engine(&cli, root, settings)?;
            let progress = ui::spawn_progress(engine.progress.clone(), bar);
            let r = engine.import(job, spec, import.share().as_ref()).await;
            progress.finish();
            display::finished(r?)
        }
        Cmd::Abort { ref job, purge, .. } => {
            ui::init_tracing(cli.verbose, false);
            let engine = engine(&cli, root, &default_run())?;
            out::out!("{}", out::clean(&engine.abort(job, purge).await?));
            Ok(())
        }
        Cmd::Share { ref job, ref with, ref share_domain, ref glance_url, .. } => {
            ui::init_tracing(cli.verbose, false);
            let engine = engine(&cli, root, &default_run())?;
            let req =
                ShareRequest { projects: with.clone(), domain: share_domain.clone(), glance_url: glance_url.clone() };
            display::shared(&engine.share(job, &req).await?)
        }
        Cmd::Accept { ref image_id, ref glance_url, .. } => {
            ui::init_tracing(cli.verbose, false);
            let engine = engine(&cli, root, &default_run())?;
            let status = engine.accept(image_id, glance_url.as_deref()).await?;
            out::out!("image {}: {status} by this project; it is in the project's image list", out::clean(image_id));
            Ok(())
        }
        Cmd::Completions { .. } | Cmd::Man { .. } => Ok(()),
        Cmd::Verify { ref job, deep, json, .. } => {
            ui::init_tracing(cli.verbose, false);
            let engine = engine(&cli, root, &default_run())?;
            let report = engine.verify(job, deep).await?;
            display::verify(&report, json)
        }
    }
}

/// The manual: one page to stdout, or with `dir` one page per command there.
fn man(dir: Option<&std::path::Path>) -> Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let render = |c: clap::Command| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .render(&mut buf)
            .map_err(|e| crate::Error::failed(format!("cannot render the manual: {e}")).caused_by(e))?;
        Ok(buf)
    };
    let Some(dir) = dir else {
        out::out!("{}", String::from_utf8_lossy(&render(cmd)?).trim_end());
        return Ok(());
    };
    if dir.exists() && !dir.is_dir() {
        return Err(crate::Error::input(format!("man --dir {}: not a directory", dir.display()))
            .hint("--dir names a directory to write the manual pages in (created if missing)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(format!("cannot create {}", dir.display()), e))?;
    let mut pages = vec![("k5up.1".to_string(), render(cmd.clone())?)];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("k5up-{}", sub.get_name());
        pages.push((
            format!("{name}.1"),
            render(sub.clone().name(name.clone()).bin_name(name).version(env!("CARGO_PKG_VERSION")))?,
        ));
    }
    for (file, bytes) in pages {
        let p = dir.join(&file);
        std::fs::write(&p, bytes).map_err(|e| crate::Error::io(format!("cannot write {}", p.display()), e))?;
        out::out!("{}", p.display());
    }
    Ok(())
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
fn engine(cli: &Cli, root: Root, a: &RunArgs) -> Result<Engine> {
    // K5UP_MD5 (benchmarks, tests) asking for lanes this CPU lacks fails loudly here.
    crate::md5lanes::Backend::from_env().map_err(crate::Error::input)?;
    let mut env = env_map();
    if let Some(region) = &cli.conn.k5_region {
        k5::apply_profile(&mut env, region, cli.conn.k5_contract.as_deref())?;
    }
    let (creds, mut tls) = crate::swift::creds::from_env(&env)?;
    if let Some(c) = &cli.conn.cacert {
        tls.cacert = Some(c.clone());
    }
    tls.insecure |= cli.conn.insecure;
    let progress = Arc::new(Progress::default());
    // The retry budget counts time without progress of the whole job.
    let clock = {
        let p = progress.clone();
        crate::retry::ProgressClock::new(move || p.last_progress())
    };
    // Only these commands take --retry-for; the others keep trying for default_run's 10 min.
    let budget_flag =
        matches!(cli.cmd, Cmd::Upload(_) | Cmd::Resume { .. } | Cmd::Import { .. }).then_some("--retry-for");
    let mut policy = Policy { retry_for: a.retry_for, progress: Some(clock), budget_flag, ..Policy::default() };
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
        given: cli.given,
        active: std::sync::Mutex::new(cli.given.over(None)),
        progress,
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
