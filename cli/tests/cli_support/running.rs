//! A running `archiver run` (or any long-lived `archiver` command) whose stderr is read line by
//! line, for tests that wait for log lines, signal it and collect its exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long any one awaited log line may take (generous: CI machines are shared).
pub const WAIT: Duration = Duration::from_secs(60);

/// A running `archiver run` whose stderr lines arrive on a channel.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Spawns `c` with stderr piped, reading it on a thread.
    pub fn start(mut c: Command) -> Self {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn archiver run");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no line with {needle:?} within {WAIT:?}; got:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the process to end; returns its exit code and every stderr line.
    pub fn finish(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("run did not stop; got:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF, closing the channel.
        self.seen.extend(self.lines.iter());
        (status.code().expect("exited, not killed"), self.seen)
    }

    /// Sends `sig` (e.g. `HUP`, `TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig}");
    }
}
