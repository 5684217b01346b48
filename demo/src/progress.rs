//! Progress while the demo starts: a spinner on a terminal, with each finished step ticked off;
//! plain lines otherwise (a pipe, a log, a test reading stdout).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;

/// Reports steps and their details.
pub(super) struct Progress {
    spinner: Option<ProgressBar>,
    /// The step in progress (shown ticked off when the next one starts), and the last detail
    /// printed in plain mode (so an unchanged detail is not repeated).
    current: Mutex<(String, String)>,
}

impl Progress {
    /// A spinner when stdout is a terminal, plain lines otherwise.
    pub(super) fn new() -> Progress {
        let spinner = std::io::stdout().is_terminal().then(|| {
            let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner
        });
        Progress {
            spinner,
            current: Mutex::new((String::new(), String::new())),
        }
    }

    /// A new step begins; the previous one is done.
    pub(super) fn step(&self, step: impl Into<String>) {
        let step = step.into();
        let mut current = self.current.lock();
        match &self.spinner {
            Some(spinner) => {
                if !current.0.is_empty() {
                    spinner.println(format!("✓ {}", current.0));
                }
                spinner.set_message(step.clone());
            }
            None => println!("{step}..."),
        }
        *current = (step, String::new());
    }

    /// Where the current step stands, e.g. `7/13 bundles healthy`.
    pub(super) fn detail(&self, detail: &str) {
        let mut current = self.current.lock();
        if current.1 == detail {
            return;
        }
        match &self.spinner {
            Some(spinner) => spinner.set_message(format!("{}: {detail}", current.0)),
            None => println!("  {detail}"),
        }
        current.1 = detail.to_owned();
    }

    /// The last step is done; the spinner leaves the terminal. Safe to call more than once.
    pub(super) fn finish(&self) {
        let mut current = self.current.lock();
        if let Some(spinner) = &self.spinner
            && !spinner.is_finished()
        {
            if !current.0.is_empty() {
                spinner.println(format!("✓ {}", current.0));
            }
            spinner.finish_and_clear();
        }
        current.0.clear();
    }
}
