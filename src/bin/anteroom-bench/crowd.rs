//! The waiting crowd: `hold` worker processes (see `worker.rs`), each with
//! its share of the fans, and the sum of what they report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, ChildStdin, Command};

/// Frames received by every fan of the crowd so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    pub rank: u64,
    pub active: u64,
    pub other: u64,
    pub closed: u64,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    /// Closing it tells the worker to exit.
    stdin: Option<ChildStdin>,
    latest: Arc<Mutex<FrameCounts>>,
}

#[derive(Debug)]
pub struct Crowd {
    workers: Vec<Worker>,
}

impl Crowd {
    /// Starts `processes` workers that together connect `fans` waiting fans
    /// to `show`, and returns once every one is connected.
    pub async fn start(
        base: &str,
        show: u64,
        fans: usize,
        processes: usize,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the harness's own path")?;
        let processes = processes.max(1);
        let mut workers = Vec::with_capacity(processes);
        let mut ready = Vec::with_capacity(processes);
        for w in 0..processes {
            let share = fans / processes + usize::from(w < fans % processes);
            // 127.0.0.2, .3, ...: each source address has its own ports.
            let source = format!("127.0.0.{}", 2 + w);
            // At nice 10: the crowd stands in for fans on other machines,
            // so the cores go to the gateway and the measuring client first.
            let mut child = Command::new("nice")
                .args(["-n", "10"])
                .arg(&exe)
                .args(["hold", "--base", base, "--show", &show.to_string()])
                .args(["--fans", &share.to_string(), "--source", &source])
                .args(["--prefix", &format!("{prefix}-w{w}")])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("start a hold worker")?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().context("worker stdout")?;
            let latest = Arc::new(Mutex::new(FrameCounts::default()));
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let counts = latest.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                let mut ready_tx = Some(ready_tx);
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut words = line.split_whitespace();
                    match words.next() {
                        Some("ready") => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Some("frames") => {
                            let n: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                            if let [rank, active, other, closed] = n[..] {
                                *counts.lock().expect("counts") = FrameCounts {
                                    rank,
                                    active,
                                    other,
                                    closed,
                                };
                            }
                        }
                        _ => {}
                    }
                }
            });
            workers.push(Worker {
                child,
                stdin,
                latest,
            });
            ready.push(ready_rx);
        }
        let mut crowd = Self { workers };
        for (w, rx) in ready.into_iter().enumerate() {
            if tokio::time::timeout(Duration::from_secs(600), rx)
                .await
                .is_err()
                || crowd.workers[w].child.try_wait()?.is_some()
            {
                crowd.stop().await;
                bail!("hold worker {w} did not connect its fans");
            }
        }
        Ok(crowd)
    }

    /// The latest sum of the workers' reports (at most 100 ms old).
    pub fn frames(&self) -> FrameCounts {
        self.workers.iter().fold(FrameCounts::default(), |sum, w| {
            let c = *w.latest.lock().expect("counts");
            FrameCounts {
                rank: sum.rank + c.rank,
                active: sum.active + c.active,
                other: sum.other + c.other,
                closed: sum.closed + c.closed,
            }
        })
    }

    /// Waits until the counts stop moving for `quiet` (reports come every
    /// 100 ms), so that frames in flight are counted.
    pub async fn settled(&self, quiet: Duration) -> FrameCounts {
        let mut last = self.frames();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.frames();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// CPU time the workers have used.
    pub fn cpu_time(&self) -> Duration {
        self.workers
            .iter()
            .filter_map(|w| w.child.id())
            .filter_map(|pid| crate::gateway::cpu_time_of(pid).ok())
            .sum()
    }

    pub async fn stop(mut self) {
        for w in &mut self.workers {
            w.stdin.take();
        }
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(10), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.kill().await;
            }
        }
    }
}
