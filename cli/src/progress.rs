//! Progress bars on stderr that log lines do not tear: while a bar is shown, log output goes
//! through [`ProgressBar::suspend`], which clears the bar, writes, and redraws it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar currently drawn, if any (one at a time: commands run one operation).
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress bar on stderr, or a hidden one when stderr is not a terminal or output is quiet
/// (scripts and `--json` get clean streams).
pub fn bar(show: bool, what: &str) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template(&format!("{what} [{{bar:40}}] {{pos}}/{{len}} eta {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
    bar
}

/// Clears the bar and stops routing logs around it.
pub fn finish(bar: &ProgressBar) {
    bar.finish_and_clear();
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).take();
}

/// stderr for the log subscriber, stepping around an active bar.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match active {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
