//! A client of the `serve` example for its tests and its load runner: starting the server
//! as a child process, plain HTTP requests (ureq), and a bounded load of `N` concurrent
//! clients with latency percentiles.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `serve` process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `binary` with `args` (which should include `--addr 127.0.0.1:0`) and waits for
    /// its `listening on` line.
    ///
    /// # Panics
    /// If the process cannot start or exits before listening (a test or runner failure).
    pub fn start(binary: &Path, args: &[String]) -> Server {
        let mut child = Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reading the server's stdout");
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
            panic!("the server did not start: {line:?} {err}");
        };
        Server { base: base.to_string(), child }
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit; returns its status and stderr.
    ///
    /// # Panics
    /// If the process does not exit in time (it is killed then).
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                let mut err = String::new();
                let _ = self.child.stderr.take().map(|mut s| s.read_to_string(&mut err));
                return (status, err);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("the server did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server left running by a failed test: stop it (no-op after `terminate`).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request: `(status, body)`; transport errors panic.
pub fn request(method: &str, url: &str, content_type: &str, body: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let req = agent.request(method, url).set("content-type", content_type);
    let result = if method == "GET" { req.call() } else { req.send_string(body) };
    match result {
        Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// `POST /translate` with a JSON body.
pub fn translate(base: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = request("POST", &format!("{base}/translate"), "application/json", &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")))
}

/// What a load run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Requests sent.
    pub requests: usize,
    /// Answers by status code.
    pub statuses: std::collections::BTreeMap<u16, usize>,
    /// Latency percentiles (50th, 99th) of every request, in milliseconds.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// Requests per second over the whole run.
    pub requests_per_s: f64,
    /// Mean `batch_texts` of the successful answers (texts decoded together).
    pub mean_batch: f64,
    /// Every successful answer's body.
    pub answers: Vec<serde_json::Value>,
}

/// `clients` threads each send `per_client` requests, one after another, each translating
/// `texts[(client + i) % texts.len()]` with `beam_width`.
pub fn load(base: &str, clients: usize, per_client: usize, texts: &[&str], beam_width: i64) -> LoadReport {
    let start = Instant::now();
    let results: Vec<(Duration, u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    (0..per_client)
                        .map(|i| {
                            let text = texts[(c + i) % texts.len()];
                            let body = serde_json::json!({ "texts": [text], "beam_width": beam_width });
                            let t = Instant::now();
                            let (status, answer) = translate(base, &body);
                            (t.elapsed(), status, answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a client thread panicked")).collect()
    });
    let wall = start.elapsed();
    let mut latencies: Vec<f64> = results.iter().map(|(d, _, _)| d.as_secs_f64() * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let mut statuses = std::collections::BTreeMap::new();
    let mut answers = Vec::new();
    for (_, status, answer) in results {
        *statuses.entry(status).or_insert(0) += 1;
        if status == 200 {
            answers.push(answer);
        }
    }
    let batches: Vec<f64> = answers.iter().filter_map(|a| a["batch_texts"].as_f64()).collect();
    LoadReport {
        requests: latencies.len(),
        statuses,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        requests_per_s: latencies.len() as f64 / wall.as_secs_f64(),
        mean_batch: batches.iter().sum::<f64>() / batches.len().max(1) as f64,
        answers,
    }
}
