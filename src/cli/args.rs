//! The command line: subcommands, their options (grouped: Import, Tuning,
//! Connection), and what was typed rather than defaulted. Values are checked here;
//! the library never sees a flag.

use std::path::PathBuf;
use std::time::Duration;

use crate::digest::Algo;
use crate::engine::{Given, ShareRequest};
use crate::import::{ImportKind, ImportSpec, k5};
use crate::{Result, units};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub(super) const EXIT_CODES: &str = "\
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
pub(super) struct Cli {
    /// Journal directory [default: $XDG_STATE_HOME/k5up or ~/.local/state/k5up]
    #[arg(long, env = "K5UP_JOURNAL", global = true, value_name = "DIR")]
    pub(super) journal: Option<PathBuf>,
    /// More log output: -v debug, -vv k5up's trace (every request with its status,
    /// time and X-Trans-Id); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(super) verbose: u8,
    #[command(subcommand)]
    pub(super) cmd: Cmd,
    /// The connection options of the subcommand (filled after parsing).
    #[arg(skip)]
    pub(super) conn: ConnArgs,
    /// The tunables typed on the command line (filled after parsing).
    #[arg(skip)]
    pub(super) given: Given,
}

/// How to reach the servers: only the subcommands that talk to them take these.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection")]
pub(super) struct ConnArgs {
    /// Extra CA certificates (PEM bundle) for a private CA [env: OS_CACERT]
    #[arg(long, value_name = "PEM")]
    pub(super) cacert: Option<PathBuf>,
    /// Do not verify TLS certificates (dangerous)
    #[arg(long)]
    pub(super) insecure: bool,
    /// K5 profile: the region (uk-1, fi-1, de-1, jp-east-1, ...). Derives the identity,
    /// object-storage and vmimport endpoints, and makes `--import k5` the default
    #[arg(long, env = "K5UP_K5_REGION", value_name = "REGION")]
    pub(super) k5_region: Option<String>,
    /// K5 profile: the contract name (the user's and project's domain)
    #[arg(long, env = "K5UP_K5_CONTRACT", value_name = "NAME")]
    pub(super) k5_contract: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum Cmd {
    /// Upload FILE as CONTAINER/OBJECT (running the same command again continues the same job)
    Upload(UploadArgs),
    /// Continue a job after a crash, a kill, a reboot or a network failure
    Resume {
        /// Job id (see `k5up jobs`)
        job: String,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        conn: ConnArgs,
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
        /// Also delete the object when it is this job's manifest (otherwise it is kept, with its segments)
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Run (or re-run) only the image import of an uploaded job
    Import {
        /// Job id
        job: String,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Share the image a job imported with other projects (Glance image members)
    Share {
        /// Job id
        job: String,
        /// The projects (ids or names; repeatable or comma-separated)
        #[arg(long = "with", value_delimiter = ',', required = true, value_name = "PROJECT")]
        with: Vec<String>,
        /// The domain of the project names [default: the user's domain]
        #[arg(long, value_name = "DOMAIN")]
        share_domain: Option<String>,
        /// Glance endpoint [default: the import's, else the `image` service in the Keystone catalog]
        #[arg(long, env = "K5UP_GLANCE_URL", value_name = "URL")]
        glance_url: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Accept an image shared with your project, so it appears in the project's image
    /// list (run with the credentials of the project it was shared with)
    Accept {
        /// The image id (`k5up status JOB` of the owner shows it)
        image_id: String,
        /// Glance endpoint [default: the `image` service in the Keystone catalog]
        #[arg(long, env = "K5UP_GLANCE_URL", value_name = "URL")]
        glance_url: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print a shell completion script: `k5up completions bash > /etc/bash_completion.d/k5up`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or with --dir write one page per command there
    Man {
        /// Write k5up.1 and k5up-COMMAND.1 into this directory
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
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
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum ManifestArg {
    Slo,
    Dlo,
}

#[derive(Debug, Args)]
pub(super) struct UploadArgs {
    /// The image file
    pub(super) file: PathBuf,
    /// Target container (created if missing; segments go to CONTAINER_segments)
    #[arg(short, long)]
    pub(super) container: String,
    /// Target object name [default: the file's name]
    #[arg(short, long)]
    pub(super) object: Option<String>,
    /// Segment size, e.g. 512MiB [default: 256MiB, larger for huge files so one manifest holds them]
    #[arg(long, value_parser = units::parse_size)]
    pub(super) segment_size: Option<u64>,
    /// Manifest kind [default: slo when the server offers it]
    #[arg(long, value_enum)]
    pub(super) manifest: Option<ManifestArg>,
    /// Print the plan (segment size and count, manifest, server limits, job id) and stop
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Replace the job that already targets CONTAINER/OBJECT (another file, or the
    /// file changed): that job is dropped (its segments deleted unless a manifest
    /// on the server uses them) and this file uploaded in its place
    #[arg(long)]
    pub(super) replace: bool,
    /// The previous version of this image on the server, CONTAINER/OBJECT: the new
    /// upload follows its segments, and copies every unchanged one on the server
    /// instead of sending it
    #[arg(long, value_name = "CONTAINER/OBJECT")]
    pub(super) base: Option<String>,
    #[command(flatten)]
    pub(super) import: ImportArgs,
    #[command(flatten)]
    pub(super) run: RunArgs,
    #[command(flatten)]
    pub(super) conn: ConnArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ImportArg {
    K5,
    Glance,
    None,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Import")]
pub(super) struct ImportArgs {
    /// The image service to import into: k5, glance, or none [upload default: none; k5 with --k5-region]
    #[arg(long = "import", value_enum)]
    pub(super) kind: Option<ImportArg>,
    /// Image name [default: the object name without its extension]
    #[arg(long)]
    pub(super) image_name: Option<String>,
    /// K5: the image's OS (win2008R2SE, win2008R2EE, win2012SE, win2012R2SE, win2016SE_ja, win2016SE_en, rhel6, rhel7, centos, ubuntu)
    #[arg(long)]
    pub(super) os_type: Option<String>,
    /// Disk format (raw, qcow2, vmdk, vhd, vhdx, iso, ...) [default: detected from the file's header]
    #[arg(long)]
    pub(super) disk_format: Option<String>,
    /// Minimum RAM of the image, in MB
    #[arg(long, value_name = "MB")]
    pub(super) min_ram: Option<u64>,
    /// Minimum disk of the image, in GB
    #[arg(long, value_name = "GB")]
    pub(super) min_disk: Option<u64>,
    /// K5 vmimport endpoint [default: from --k5-region]
    #[arg(long, env = "K5UP_VMIMPORT_URL", value_name = "URL")]
    pub(super) vmimport_url: Option<String>,
    /// Glance endpoint [default: the `image` service in the Keystone catalog]
    #[arg(long, env = "K5UP_GLANCE_URL", value_name = "URL")]
    pub(super) glance_url: Option<String>,
    /// K5 regions that convert images: send conversion, user_name, password (base64), domain_name
    #[arg(long)]
    k5_conversion: bool,
    /// Allow --k5-conversion to send the password over plain http to a loopback endpoint (tests only)
    #[arg(long)]
    pub(super) allow_http_password: bool,
    /// Whole-image digests to compute and show in `status` (md5, sha1, sha256, sha512; repeatable or comma-separated)
    #[arg(long = "digest", value_delimiter = ',', value_parser = parse_algo)]
    pub(super) digests: Vec<Algo>,
    /// Once imported, share the image with these projects (ids or names; repeatable or
    /// comma-separated). Each sees it after accepting it (`k5up accept IMAGE_ID`)
    #[arg(long, value_delimiter = ',', value_name = "PROJECT")]
    pub(super) share_with: Vec<String>,
    /// The domain of the project names in --share-with [default: the user's domain]
    #[arg(long, value_name = "DOMAIN", requires = "share_with")]
    pub(super) share_domain: Option<String>,
}

fn parse_algo(s: &str) -> std::result::Result<Algo, String> {
    s.parse::<Algo>().map_err(|e| format!("{e:#}"))
}

/// Which tunables were typed on the command line (a default or nothing typed
/// leaves the job's journaled value in force).
pub(super) fn given(cmd: &Cmd, m: &clap::ArgMatches) -> Given {
    let run = match cmd {
        Cmd::Upload(a) => &a.run,
        Cmd::Resume { run, .. } | Cmd::Import { run, .. } => run,
        _ => return Given::default(),
    };
    let Some((_, sub)) = m.subcommand() else { return Given::default() };
    let typed = |id: &str| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    Given {
        concurrency: typed("concurrency").then_some(run.concurrency as usize),
        stall_timeout: typed("stall_timeout").then_some(run.stall_timeout),
        bwlimit: typed("bwlimit").then(|| run.bwlimit.filter(|r| *r > 0)),
    }
}

impl Cli {
    /// `--glance-url` typed on the command line implies `--import glance`, and
    /// `--vmimport-url` implies `--import k5` (`k5up import JOB --glance-url URL`
    /// ignored the URL). The same values from the environment imply nothing.
    pub(super) fn implied_import(&mut self, m: &clap::ArgMatches) {
        let import = match &mut self.cmd {
            Cmd::Upload(a) => &mut a.import,
            Cmd::Import { import, .. } => import,
            _ => return,
        };
        let Some((_, sub)) = m.subcommand() else { return };
        let typed = |id: &str| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let (glance, k5) = (typed("glance_url"), typed("vmimport_url"));
        if import.kind.is_none() && glance != k5 {
            import.kind = Some(if glance { ImportArg::Glance } else { ImportArg::K5 });
        }
    }
}

impl ImportArgs {
    /// `--share-with` and its companions; `None` when not given. With a K5 import,
    /// `--glance-url` names the region's Glance, where K5 registers its images.
    pub(super) fn share(&self) -> Option<ShareRequest> {
        (!self.share_with.is_empty()).then(|| ShareRequest {
            projects: self.share_with.clone(),
            domain: self.share_domain.clone(),
            glance_url: if self.kind == Some(ImportArg::K5) { self.glance_url.clone() } else { None },
        })
    }

    /// The import asked for; `None` for no import. `is_new_job`: the K5 profile's
    /// default applies (a bare `k5up import JOB` keeps the journaled one).
    pub(super) fn spec(&self, cli: &Cli, default_from_profile: bool) -> Result<Option<ImportSpec>> {
        let kind = match self.kind {
            Some(ImportArg::K5) => ImportKind::K5,
            Some(ImportArg::Glance) => ImportKind::Glance,
            Some(ImportArg::None) => return Ok(None),
            None if default_from_profile && cli.conn.k5_region.is_some() => ImportKind::K5,
            None => return Ok(None),
        };
        let endpoint = match kind {
            ImportKind::K5 => match (&self.vmimport_url, &cli.conn.k5_region) {
                (Some(u), _) => Some(u.clone()),
                (None, Some(r)) => Some(k5::profile(r)?.vmimport_url),
                (None, None) => None,
            },
            ImportKind::Glance => self.glance_url.clone(),
        };
        Ok(Some(ImportSpec {
            kind,
            image_name: self.image_name.clone().unwrap_or_default(),
            os_type: self.os_type.clone(),
            disk_format: self.disk_format.clone().unwrap_or_default().to_ascii_lowercase(),
            min_ram: self.min_ram,
            min_disk: self.min_disk,
            endpoint,
            k5_conversion: self.k5_conversion,
            allow_http_password: self.allow_http_password,
        }))
    }
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Tuning")]
pub(super) struct RunArgs {
    /// Segments uploaded in parallel
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(super) concurrency: u16,
    /// Keep retrying transient failures of one request for this long (e.g. 30m, 6h)
    #[arg(long, default_value = "2h", value_parser = units::parse_duration)]
    pub(super) retry_for: Duration,
    /// Abandon and retry a PUT that makes no progress for this long
    #[arg(long, default_value = "60s", value_parser = |s: &str| units::parse_duration_at_least(s, std::time::Duration::from_secs(1)))]
    pub(super) stall_timeout: Duration,
    /// Cap the upload rate, e.g. 20MiB (per second, all segments together); `off` lifts
    /// the cap of the job's last run. Like --concurrency and --stall-timeout, it is
    /// kept with the job: `resume` uses it unless given again
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub(super) bwlimit: Option<u64>,
    /// No progress bar (periodic log lines instead)
    #[arg(long)]
    pub(super) no_progress: bool,
}

/// A rate (`20MiB`, `5M/s`); `off` lifts a limit the job's last run had. `0` is
/// refused: it would read as "nothing may be sent", yet meant "unlimited".
pub(super) fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    if matches!(s.trim(), "off" | "none") {
        return Ok(0);
    }
    match units::parse_size(s.trim().trim_end_matches("/s"))? {
        0 => Err(format!("`{s}`: a rate of 0 is refused: use no --bwlimit (or `--bwlimit off`) for unlimited")),
        r if r < 1024 => Err(format!("`{s}`: a rate below 1 KiB/s is not useful")),
        r => Ok(r),
    }
}
