//! A real S3-compatible server for tests and the bench: `moto_server` (PyPI `moto[server]`) on
//! a free loopback port, plus a request gate in front of it that can hold any one request so
//! a test can kill the archiver at an exact step.
//!
//! moto because it is a maintained, pip-installable S3 implementation that speaks the real
//! wire protocol (SigV4, multipart uploads, ListObjectsV2, ETags) without a daemon, a
//! container or an account; `.ci/run` installs it and `boto3` comes with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

/// What the tests give as credentials and region (moto accepts any).
pub const ACCESS_KEY: &str = "testing";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";
/// See [`ACCESS_KEY`].
pub const REGION: &str = "us-east-1";

/// How long to wait for moto to say it listens: a watchdog against a hung start, not a timing.
const START_WATCHDOG: Duration = Duration::from_secs(120);

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p 0` and waits for the port it chose.
    ///
    /// Panics, saying how to install it, when moto is missing.
    pub fn start() -> Moto {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): the S3 tests need moto's S3 server; \
                     install it with `pip install 'moto[server]'`"
                )
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Keeps reading after the port is known: a full pipe would block the server.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(t) = &tx {
                    if let Some(url) = line
                        .split_whitespace()
                        .find(|w| w.starts_with("http://127.0.0.1:"))
                    {
                        let _ = t.send(Ok(url.trim_end_matches('/').to_string()));
                        tx = None;
                    } else {
                        seen.push_str(&line);
                        seen.push('\n');
                    }
                }
            }
            if let Some(t) = tx {
                let _ = t.send(Err(seen));
            }
        });
        let endpoint = match rx.recv_timeout(START_WATCHDOG) {
            Ok(Ok(url)) => url,
            Ok(Err(output)) => {
                let _ = child.kill();
                panic!(
                    "moto_server exited without listening (is `moto[server]` installed? \
                     `pip install 'moto[server]'`):\n{output}"
                )
            }
            Err(_) => {
                let _ = child.kill();
                panic!("moto_server did not start listening")
            }
        };
        Moto { child, endpoint }
    }

    /// Creates `bucket` with an ordinary client (boto3).
    pub fn create_bucket(&self, bucket: &str) {
        self.python(&format!("s3.create_bucket(Bucket={})", py_str(bucket)));
    }

    /// `(key, size)` of every object under `prefix`, listed with boto3.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let out = self.python(&format!(
            "p = s3.get_paginator('list_objects_v2')\n\
             for page in p.paginate(Bucket={}, Prefix={}):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       print(o['Key'], o['Size'])",
            py_str(bucket),
            py_str(prefix)
        ));
        let mut v: Vec<(String, u64)> = out
            .lines()
            .map(|l| {
                let (k, s) = l.rsplit_once(' ').expect("key size");
                (k.to_string(), s.parse().expect("size"))
            })
            .collect();
        v.sort();
        v
    }

    /// Downloads `bucket/key` to `dest` with boto3.
    pub fn download(&self, bucket: &str, key: &str, dest: &Path) {
        self.python(&format!(
            "s3.download_file({}, {}, {})",
            py_str(bucket),
            py_str(key),
            py_str(dest.to_str().expect("utf-8 path"))
        ));
    }

    /// Uploads `bytes` to `bucket/key` with boto3 (another machine's or a user's object).
    pub fn upload(&self, bucket: &str, key: &str, src: &Path) {
        self.python(&format!(
            "s3.upload_file({}, {}, {})",
            py_str(src.to_str().expect("utf-8 path")),
            py_str(bucket),
            py_str(key)
        ));
    }

    /// Multipart uploads started under `prefix` and never completed or aborted.
    pub fn open_uploads(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.python(&format!(
            "r = s3.list_multipart_uploads(Bucket={}, Prefix={})\n\
             for u in r.get('Uploads', []):\n\
             \x20   print(u['Key'])",
            py_str(bucket),
            py_str(prefix)
        ));
        out.lines().map(str::to_string).collect()
    }

    /// Runs `script` with `s3` bound to a boto3 client of this server; returns its stdout.
    fn python(&self, script: &str) -> String {
        let full = format!(
            "import boto3\n\
             s3 = boto3.client('s3', endpoint_url={}, region_name={}, \
             aws_access_key_id={}, aws_secret_access_key={})\n{script}\n",
            py_str(&self.endpoint),
            py_str(REGION),
            py_str(ACCESS_KEY),
            py_str(SECRET_KEY)
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(&full)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("run python3 (boto3 comes with moto: `pip install 'moto[server]'`)");
        assert!(
            out.status.success(),
            "boto3 script failed:\n{full}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Sets the environment an `archiver` (or any AWS client) needs to reach this server:
    /// credentials, region, and no other `AWS_*` setting from the caller.
    pub fn env(&self, c: &mut Command) {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", REGION);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python string literal.
fn py_str(s: &str) -> String {
    format!("{s:?}")
}

/// When the gate holds the request it is set to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Before forwarding it: the server never sees it.
    Before,
    /// After the server answered, before the answer is passed on: done, but the client never
    /// learns it.
    After,
}

/// Which request a gate holds: the Nth, or the first whose request line matches.
type Matcher = Box<dyn Fn(&str) -> bool + Send>;

#[derive(Default)]
struct GateState {
    requests: usize,
    /// Request lines (`PUT /bucket/key HTTP/1.1`) in order.
    log: Vec<String>,
    hold: Option<(usize, Hold)>,
    hold_matching: Option<(Matcher, Hold)>,
    held: Option<String>,
}

/// A loopback proxy in front of a server that counts HTTP requests and can hold the Nth one
/// (see [`Hold`]) forever, so a test can kill the client exactly there. Each request is sent
/// upstream on its own connection; the answer tells the client to close its connection.
pub struct Gate {
    /// `http://127.0.0.1:PORT` of the gate.
    pub endpoint: String,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

impl Gate {
    /// A gate in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Gate {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<(Mutex<GateState>, Condvar)> = Arc::default();
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &upstream, &s);
                });
            }
        });
        Gate { endpoint, state }
    }

    /// Holds request `n` (1-based, counted from now) as `how`; resets the count.
    pub fn hold(&self, n: usize, how: Hold) {
        let mut st = self.state.0.lock().unwrap();
        *st = GateState {
            hold: Some((n, how)),
            ..GateState::default()
        };
    }

    /// Holds the first request whose request line (`PUT /bucket/key?partNumber=2... HTTP/1.1`)
    /// satisfies `matches`, as `how`; resets the count.
    pub fn hold_first(&self, matches: impl Fn(&str) -> bool + Send + 'static, how: Hold) {
        let mut st = self.state.0.lock().unwrap();
        *st = GateState {
            hold_matching: Some((Box::new(matches), how)),
            ..GateState::default()
        };
    }

    /// Holds nothing from now on; resets the count.
    pub fn pass(&self) {
        *self.state.0.lock().unwrap() = GateState::default();
    }

    /// Requests seen since the last [`hold`](Self::hold) or [`pass`](Self::pass).
    pub fn requests(&self) -> usize {
        self.state.0.lock().unwrap().requests
    }

    /// Their request lines (`PUT /bucket/key HTTP/1.1`), in order.
    pub fn log(&self) -> Vec<String> {
        self.state.0.lock().unwrap().log.clone()
    }

    /// Waits until the request to hold arrived; returns its request line. `None` when
    /// `done()` says the client finished first (it made fewer requests).
    pub fn wait_held(&self, mut done: impl FnMut() -> bool) -> Option<String> {
        let (m, cv) = &*self.state;
        let mut st = m.lock().unwrap();
        loop {
            if let Some(line) = &st.held {
                return Some(line.clone());
            }
            if done() {
                return None;
            }
            st = cv.wait_timeout(st, Duration::from_millis(20)).unwrap().0;
        }
    }
}

/// Reads one request head; `None` at a clean end of the connection.
fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn serve(
    client: TcpStream,
    upstream: &str,
    state: &Arc<(Mutex<GateState>, Condvar)>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    // One request per connection: the answer tells the client to close it.
    if let Some(head) = read_head(&mut reader)? {
        let len: usize = head
            .iter()
            .filter_map(|h| h.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let how = {
            let (m, cv) = &**state;
            let mut st = m.lock().unwrap();
            st.requests += 1;
            st.log.push(head[0].clone());
            let n = st.requests;
            let matched = match &st.hold_matching {
                Some((m, how)) if m(&head[0]) => Some(*how),
                _ => None,
            };
            if matched.is_some() {
                st.hold_matching = None;
            }
            match st
                .hold
                .filter(|(at, _)| *at == n)
                .map(|(_, how)| how)
                .or(matched)
            {
                Some(how) => {
                    if how == Hold::Before {
                        st.held = Some(head[0].clone());
                        cv.notify_all();
                    }
                    Some(how)
                }
                _ => None,
            }
        };
        if how == Some(Hold::Before) {
            return park();
        }
        let mut up = TcpStream::connect(upstream)?;
        let mut out = String::new();
        for h in &head {
            if h.split_once(':')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case("connection"))
            {
                continue;
            }
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        up.write_all(out.as_bytes())?;
        up.write_all(&body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        if how == Some(Hold::After) {
            let (m, cv) = &**state;
            m.lock().unwrap().held = Some(head[0].clone());
            cv.notify_all();
            return park();
        }
        // The answer is passed on as is, closing the client's connection after it (the
        // upstream answered `Connection: close`, or is told to below).
        let answer = force_close(answer);
        client.write_all(&answer)?;
        client.flush()?;
        let _ = client.shutdown(Shutdown::Both);
    }
    Ok(())
}

/// Makes sure the answer's head says `Connection: close`.
fn force_close(answer: Vec<u8>) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer;
    };
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut out = String::new();
    for h in head.split("\r\n") {
        if h.split_once(':')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(&answer[end + 2..]);
    v
}

/// A held request's thread: never answers (the test kills the client).
fn park() -> std::io::Result<()> {
    loop {
        std::thread::park();
    }
}
