//! Progress of long runs on stderr: a bar with rate and ETA on a terminal, plain lines (at
//! most one every few seconds, and one per phase) otherwise, so logs stay readable.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use followup_readmodel::{Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Shows a rebuild's [`Progress`].
#[derive(Debug)]
pub struct ProgressView {
    /// What is being done, for the lines (`rebuild`, `verify`).
    label: &'static str,
    /// The bar, on a terminal; `None` writes plain lines.
    bar: Option<ProgressBar>,
    /// The phase shown now.
    phase: Option<Phase>,
    /// When the current phase began (for the plain lines' rate and ETA).
    phase_started: Instant,
    /// When the last plain line was written.
    last_line: Option<Instant>,
    /// Nothing at all is shown (`--quiet`).
    quiet: bool,
}

impl ProgressView {
    /// A view on stderr: a bar when stderr is a terminal, plain lines otherwise.
    pub fn new(label: &'static str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>9} [{bar:32}] {human_pos}/{human_len} ({per_sec}, ETA {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            label,
            bar,
            phase: None,
            phase_started: Instant::now(),
            last_line: None,
            quiet,
        }
    }

    /// Shows `progress`.
    pub fn update(&mut self, progress: Progress) {
        if self.quiet {
            return;
        }
        let new_phase = self.phase != Some(progress.phase);
        if new_phase {
            self.phase = Some(progress.phase);
            self.phase_started = Instant::now();
            self.last_line = None;
        }
        match &self.bar {
            Some(bar) => {
                if new_phase {
                    bar.reset();
                    bar.set_message(phase_name(progress.phase));
                }
                bar.set_length(progress.total);
                bar.set_position(progress.done);
            }
            None => {
                let due = self.last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY);
                if due || progress.done == progress.total {
                    self.last_line = Some(Instant::now());
                    eprintln!("{}", self.line(progress));
                }
            }
        }
    }

    /// Clears the bar (the report follows on stdout).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, progress: Progress) -> String {
        let elapsed = self.phase_started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            progress.done as f64 / elapsed
        } else {
            0.0
        };
        let left = progress.total.saturating_sub(progress.done);
        let eta = if rate > 0.0 {
            format!(", ETA {:.0} s", left as f64 / rate)
        } else {
            String::new()
        };
        let percent = if progress.total > 0 {
            100.0 * progress.done as f64 / progress.total as f64
        } else {
            100.0
        };
        format!(
            "{}: {} {}/{} ({percent:.0} %), {rate:.0}/s{eta}",
            self.label,
            phase_name(progress.phase),
            progress.done,
            progress.total
        )
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Prepare => "prepare",
        Phase::Load => "load",
        Phase::Index => "index",
        Phase::CatchUp => "catch-up",
        Phase::Switch => "switch",
    }
}
