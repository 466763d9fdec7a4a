//! The progress of an import or an export: a bar on a terminal, plain
//! lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A progress bar on a terminal; plain lines, at most one a second,
/// otherwise.
pub(crate) struct Progress {
    pub(crate) bar: Option<indicatif::ProgressBar>,
    pub(crate) total: u64,
    /// What is done to the events: `posted`, `read`, `exported`.
    pub(crate) done: &'static str,
    pub(crate) last_line: std::sync::Mutex<Option<Instant>>,
}

impl Progress {
    pub(crate) fn new(total: u64, done: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            let template = format!("{{bar:40}} {{pos}}/{{len}} events {done} {{elapsed}}");
            if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, total, done, last_line: std::sync::Mutex::new(None) }
    }

    pub(crate) fn set(&self, count: u64, last: bool) {
        match &self.bar {
            Some(bar) => bar.set_position(count),
            None => {
                let mut last_line = self.last_line.lock().expect("not poisoned");
                if last || last_line.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("{} {count}/{} events", self.done, self.total);
                    *last_line = Some(Instant::now());
                }
            }
        }
    }

    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
            eprintln!("{} {}/{} events", self.done, bar.position(), self.total);
        }
    }
}
