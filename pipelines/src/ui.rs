//! What a run says on stderr: one line per stage event; on a terminal also
//! a spinner naming the stages running now. `--quiet` keeps failures only.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Ui {
    bar: Option<ProgressBar>,
    quiet: bool,
    width: usize,
    running: Mutex<BTreeSet<String>>,
    done: Mutex<(usize, usize)>,
}

impl Ui {
    pub fn new(quiet: bool, total: usize, width: usize) -> Ui {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Ui {
            bar,
            quiet,
            width,
            running: Mutex::new(BTreeSet::new()),
            done: Mutex::new((0, total)),
        }
    }

    /// A line above the spinner (or plain, off a terminal).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    pub fn info(&self, text: &str) {
        if !self.quiet {
            self.line(text);
        }
    }

    /// `mark` is one of ▶ ✓ = ✗ -.
    pub fn stage(&self, mark: &str, name: &str, text: &str) {
        let line = format!("  {mark} {name:<w$}  {text}", w = self.width);
        if mark == "✗" {
            self.line(&line);
        } else {
            self.info(&line);
        }
    }

    pub fn started(&self, name: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(name.to_string());
        }
        self.refresh();
    }

    pub fn finished(&self, name: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(name);
        }
        if let Ok(mut d) = self.done.lock() {
            d.0 += 1;
        }
        self.refresh();
    }

    fn refresh(&self) {
        let Some(bar) = &self.bar else { return };
        let running: Vec<String> = self
            .running
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        let (done, total) = self.done.lock().map(|d| *d).unwrap_or((0, 0));
        bar.set_message(format!(
            "{done}/{total} done · running {}",
            running.join(", ")
        ));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
