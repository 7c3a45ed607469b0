//! Real `latchkey serve` processes, for multi-instance and failure tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub env: Vec<(String, String)>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
}

impl ServerProcess {
    /// Starts `latchkey serve` with exactly this environment (plus JSON
    /// logs and port 0) and waits until it listens.
    pub async fn start(dir: &std::path::Path, env: &[(String, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command.arg("serve");
        Self::start_command(command, dir, env).await
    }

    /// [`ServerProcess::start`] with the open-file limit (soft and hard) set
    /// to `limit`, as `ulimit -n` in a shell that then becomes the server
    /// (so the child's pid is the server's).
    pub async fn start_with_open_file_limit(
        dir: &std::path::Path,
        env: &[(String, String)],
        limit: u32,
    ) -> Self {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "ulimit -n \"$1\" && exec \"$0\" serve",
            env!("CARGO_BIN_EXE_latchkey"),
            &limit.to_string(),
        ]);
        Self::start_command(command, dir, env).await
    }

    async fn start_command(
        mut command: Command,
        dir: &std::path::Path,
        env: &[(String, String)],
    ) -> Self {
        let mut child = command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LATCHKEY_BIND", "127.0.0.1:0")
            .env("LATCHKEY_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            base: String::new(),
            env: env.to_vec(),
            lines,
            seen: Vec::new(),
        };
        let line = server.wait_for("latchkey listening").await;
        let v: Value = serde_json::from_str(&line).unwrap();
        server.base = format!("http://{}", v["fields"]["address"].as_str().unwrap());
        server
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {needle:?}; saw: {:#?}", self.seen))
                .unwrap_or_else(|| panic!("server exited; saw: {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every line logged so far, after giving the server a moment.
    pub async fn drain(&mut self) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
