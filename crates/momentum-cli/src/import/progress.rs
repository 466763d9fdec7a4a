//! The progress of posting: a bar on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A progress bar on a terminal; plain lines, at most one a second,
/// otherwise.
pub(super) struct Progress {
    pub(super) bar: Option<indicatif::ProgressBar>,
    pub(super) total: u64,
    pub(super) last_line: std::sync::Mutex<Option<Instant>>,
}

impl Progress {
    pub(super) fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {elapsed}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, total, last_line: std::sync::Mutex::new(None) }
    }

    pub(super) fn set(&self, posted: u64, last: bool) {
        match &self.bar {
            Some(bar) => bar.set_position(posted),
            None => {
                let mut last_line = self.last_line.lock().expect("not poisoned");
                if last || last_line.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("posted {posted}/{} events", self.total);
                    *last_line = Some(Instant::now());
                }
            }
        }
    }

    pub(super) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
            eprintln!("posted {}/{} events", bar.position(), self.total);
        }
    }
}
