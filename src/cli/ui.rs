//! Progress display: a bar on a terminal, periodic log lines otherwise; and the
//! tracing subscriber, which prints through the bar so lines do not tear it.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::transfer::progress::Progress;
use crate::units::format_size;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
                // The rate and ETA are k5up's own (bytes on the wire over the last
                // seconds), in {msg}: indicatif's count confirmed bytes since the start,
                // which showed "0 B/s ETA 0s" at first and a rate while nothing moved.
                "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    });
    let default = match verbose {
        0 => "k5up=info",
        1 => "k5up=debug",
        // k5up's own trace (every request, its status, time and X-Trans-Id); other
        // crates only warn (RUST_LOG=trace shows their internals too).
        _ => "warn,k5up=trace",
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

/// The rate of bytes put on the wire over the last few seconds: an average since
/// the start kept showing a rate while nothing moved (a link down, retries waiting).
struct Rate {
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
    window: Duration,
}

impl Rate {
    fn new(window: Duration) -> Self {
        Rate { samples: std::collections::VecDeque::new(), window }
    }

    /// Records `sent` (a running total) now; returns bytes per second over the window,
    /// `None` until two samples a moment apart exist.
    fn update(&mut self, sent: u64) -> Option<f64> {
        let now = std::time::Instant::now();
        self.samples.push_back((now, sent));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > self.window {
            self.samples.pop_front();
        }
        let (t0, b0) = *self.samples.front()?;
        let secs = now.duration_since(t0).as_secs_f64();
        (secs >= 0.5).then(|| sent.saturating_sub(b0) as f64 / secs)
    }
}

/// "sending 12.0 MiB/s, ETA 3m 20s", "nothing sent for a while", or "starting".
fn rate_text(rate: Option<f64>, left: u64) -> String {
    match rate {
        None => "starting".into(),
        Some(r) if r < 1.0 => "nothing sent in the last seconds".into(),
        Some(r) => {
            let eta = Duration::from_secs_f64((left as f64 / r).min(1e9));
            format!(
                "sending {}/s, ETA {}",
                format_size(r as u64),
                crate::units::format_duration(Duration::from_secs(eta.as_secs()))
            )
        }
    }
}

/// ", link down for 12s" while the link is down; ", segments cut to 4.00 MiB" while
/// the link carries less than the planned segments.
fn link_text(p: &Progress) -> String {
    let down = p
        .link_down_for()
        .map(|d| format!(", link down for {}", crate::units::format_duration(Duration::from_secs(d.as_secs()))));
    let cut = Some(Progress::get(&p.segment_target))
        .filter(|&t| t > 0)
        .map(|t| format!(", segments cut to {}", format_size(t)));
    down.unwrap_or_default() + &cut.unwrap_or_default()
}

fn line(p: &Progress, rate: Option<f64>) -> String {
    let total = Progress::get(&p.bytes_total);
    let done = Progress::get(&p.bytes_confirmed);
    let pct = if total > 0 { done as f64 * 100.0 / total as f64 } else { 100.0 };
    format!(
        "{} of {} confirmed ({pct:.1}%), {} segments of {}, {}{}",
        format_size(done),
        format_size(total),
        Progress::get(&p.segments_confirmed),
        Progress::get(&p.segments_total),
        rate_text(rate, total.saturating_sub(done)),
        link_text(p)
    )
}

/// Starts the display: the bar is refreshed 4 times a second; without a bar a log
/// line is written every `K5UP_PROGRESS_SECS` seconds (default 30).
/// While an import runs: what it is doing.
fn importing(p: &Progress) -> Option<String> {
    let x = p.extras.lock().ok()?;
    let i = x.import.as_ref().filter(|i| i.outcome == crate::journal::ImportOutcome::Running)?;
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
        let mut rate = Rate::new(Duration::from_secs(if b.is_some() { 5 } else { every.max(1) * 2 }));
        loop {
            tick.tick().await;
            let r = rate.update(Progress::get(&p.run_bytes_sent));
            match &b {
                Some(b) if importing(&p).is_some() => {
                    b.set_message(importing(&p).unwrap_or_default());
                }
                None if importing(&p).is_some() => {
                    tracing::info!("{}", importing(&p).unwrap_or_default());
                }
                Some(b) => {
                    let (total, done) = (Progress::get(&p.bytes_total), Progress::get(&p.bytes_confirmed));
                    b.set_length(total);
                    b.set_position(done);
                    b.set_message(format!(
                        "{}/{} segs, {}{}",
                        Progress::get(&p.segments_confirmed),
                        Progress::get(&p.segments_total),
                        rate_text(r, total.saturating_sub(done)),
                        link_text(&p)
                    ));
                }
                None => {
                    if Progress::get(&p.segments_total) > 0 {
                        tracing::info!("{}", line(&p, r));
                    }
                }
            }
        }
    });
    Display { task, bar }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_recent_and_says_when_nothing_moves() {
        assert_eq!(rate_text(None, 100), "starting");
        assert_eq!(rate_text(Some(0.0), 100), "nothing sent in the last seconds");
        assert_eq!(rate_text(Some(1024.0 * 1024.0), 10 << 20), "sending 1.00 MiB/s, ETA 10s");
        let mut r = Rate::new(Duration::from_millis(200));
        assert_eq!(r.update(0), None, "one sample: no rate yet");
    }
}
