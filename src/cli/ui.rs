//! Progress display: a bar on a terminal, periodic log lines otherwise; and the
//! tracing subscriber, which prints through the bar so lines do not tear it.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use k5up::progress::Progress;
use k5up::units::format_size;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Writes log lines to stderr, suspending the progress bar while doing so; control
/// characters inside a line (a newline in an object name) are escaped.
#[derive(Clone)]
struct BarWriter(Option<ProgressBar>, bool);

impl Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = super::out::clean_log(buf, self.1);
        let put = || std::io::stderr().write_all(&line);
        match &self.0 {
            Some(b) if !b.is_hidden() => b.suspend(put)?,
            _ => put()?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for BarWriter {
    type Writer = BarWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Sets up logging; returns a progress bar when one should be drawn.
pub(super) fn init_tracing(verbose: u8, want_bar: bool) -> Option<ProgressBar> {
    let bar = (want_bar && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(4));
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    });
    let default = match verbose {
        0 => "k5up=info",
        1 => "k5up=debug",
        _ => "k5up=trace,info",
    };
    let ansi = std::io::stderr().is_terminal();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(BarWriter(bar.clone(), ansi))
        .try_init();
    bar
}

/// The running display; `finish` stops it.
pub(super) struct Display {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Display {
    pub(super) fn finish(self) {
        self.task.abort();
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

fn line(p: &Progress) -> String {
    let total = Progress::get(&p.bytes_total);
    let done = Progress::get(&p.bytes_confirmed);
    let secs = p.started.elapsed().as_secs_f64().max(0.001);
    let rate = Progress::get(&p.run_bytes_sent) as f64 / secs;
    let pct = if total > 0 { done as f64 * 100.0 / total as f64 } else { 100.0 };
    format!(
        "{} of {} confirmed ({pct:.1}%), {} segments of {}, sending {}/s",
        format_size(done),
        format_size(total),
        Progress::get(&p.segments_confirmed),
        Progress::get(&p.segments_total),
        format_size(rate as u64)
    )
}

/// Starts the display: the bar is refreshed 4 times a second; without a bar a log
/// line is written every `K5UP_PROGRESS_SECS` seconds (default 30).
/// While an import runs: what it is doing.
fn importing(p: &Progress) -> Option<String> {
    let x = p.extras.lock().ok()?;
    let i = x.import.as_ref().filter(|i| i.outcome == k5up::journal::ImportOutcome::Running)?;
    let pct = i.progress.map(|v| format!(" {v}%")).unwrap_or_default();
    Some(format!("{} import of image {}: {}{pct}", i.kind.as_str(), i.image_id, i.status))
}

pub(super) fn spawn_progress(p: Arc<Progress>, bar: Option<ProgressBar>) -> Display {
    let b = bar.clone();
    let every = std::env::var("K5UP_PROGRESS_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30u64);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(if b.is_some() {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(every.max(1))
        });
        tick.tick().await;
        let mut first = true;
        loop {
            tick.tick().await;
            match &b {
                Some(b) if importing(&p).is_some() => {
                    b.set_message(importing(&p).unwrap_or_default());
                }
                None if importing(&p).is_some() => {
                    tracing::info!("{}", importing(&p).unwrap_or_default());
                }
                Some(b) => {
                    b.set_length(Progress::get(&p.bytes_total));
                    b.set_position(Progress::get(&p.bytes_confirmed));
                    if first && Progress::get(&p.bytes_total) > 0 {
                        // what earlier runs confirmed must not count in this run's rate
                        b.reset_eta();
                        first = false;
                    }
                    b.set_message(format!(
                        "{}/{} segs",
                        Progress::get(&p.segments_confirmed),
                        Progress::get(&p.segments_total)
                    ));
                }
                None => {
                    if Progress::get(&p.segments_total) > 0 {
                        tracing::info!("{}", line(&p));
                    }
                }
            }
        }
    });
    Display { task, bar }
}
