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
    /// Pre-queued fans that have had their first frame after `prequeue`.
    pub firsts: u64,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    /// Closing it tells the worker to exit.
    stdin: Option<ChildStdin>,
    latest: Arc<Mutex<FrameCounts>>,
    /// Where a pre-queue worker writes its fans' records on exit.
    record: Option<std::path::PathBuf>,
}

/// Which line a crowd waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A show on anteroom gateways: each fan signs in and joins.
    Show(u64),
    /// The Socket.IO peer's one line: each fan just connects.
    SocketIo,
}

#[derive(Debug)]
pub struct Crowd {
    workers: Vec<Worker>,
    /// Joins the workers tried again after a 503 (a backend unavailable),
    /// as a fan's page would.
    pub join_retries: u64,
}

impl Crowd {
    /// Starts `processes` workers that together connect `fans` waiting fans
    /// to `line`, worker `w` on server `bases[w % bases.len()]`, and returns
    /// once every one is connected. With `records`, the fans are pre-queued
    /// and each worker records their opening in a file in that directory
    /// ([`Crowd::stop_and_collect`]).
    pub async fn start(
        bases: &[String],
        line: Line,
        fans: usize,
        processes: usize,
        prefix: &str,
        records: Option<&std::path::Path>,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the harness's own path")?;
        let processes = processes.max(1);
        let mut workers = Vec::with_capacity(processes);
        let mut ready = Vec::with_capacity(processes);
        for w in 0..processes {
            let share = fans / processes + usize::from(w < fans % processes);
            // 127.0.0.2, .3, ...: each source address has its own ports.
            let source = format!("127.0.0.{}", 2 + w);
            let base = &bases[w % bases.len()];
            let record = records.map(|dir| dir.join(format!("{prefix}-w{w}.fans")));
            // At nice 10: the crowd stands in for fans on other machines,
            // so the cores go to the gateway and the measuring client first.
            let mut command = Command::new("nice");
            command
                .args(["-n", "10"])
                .arg(&exe)
                .args(["hold", "--base", base])
                .args(["--fans", &share.to_string(), "--source", &source])
                .args(["--prefix", &format!("{prefix}-w{w}")])
                .args(["--concurrency", &concurrency.to_string()]);
            match line {
                Line::Show(show) => command.args(["--show", &show.to_string()]),
                Line::SocketIo => command.args(["--protocol", "socket-io"]),
            };
            if let Some(record) = &record {
                command.arg("--record").arg(record);
            }
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("start a hold worker")?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().context("worker stdout")?;
            let latest = Arc::new(Mutex::new(FrameCounts::default()));
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<u64>();
            let counts = latest.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                let mut ready_tx = Some(ready_tx);
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut words = line.split_whitespace();
                    match words.next() {
                        Some("ready") => {
                            // `ready N retries R`
                            let retries = words.nth(2).and_then(|r| r.parse().ok());
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(retries.unwrap_or(0));
                            }
                        }
                        Some("frames") => {
                            let n: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                            if let [rank, active, other, closed, firsts] = n[..] {
                                *counts.lock().expect("counts") = FrameCounts {
                                    rank,
                                    active,
                                    other,
                                    closed,
                                    firsts,
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
                record,
            });
            ready.push(ready_rx);
        }
        let mut crowd = Self {
            workers,
            join_retries: 0,
        };
        for (w, rx) in ready.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(600), rx).await {
                Ok(Ok(retries)) if crowd.workers[w].child.try_wait()?.is_none() => {
                    crowd.join_retries += retries;
                }
                _ => {
                    crowd.stop().await;
                    bail!("hold worker {w} did not connect its fans");
                }
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
                firsts: sum.firsts + c.firsts,
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

    /// Waits until every one of the crowd's `fans` has had its first rank
    /// frame and the counts are quiet, then 2 s more for the server's memory
    /// to settle (the idle measurement follows).
    pub async fn all_ranked(&self, fans: usize) -> anyhow::Result<()> {
        let first = self.settled(Duration::from_millis(500)).await;
        if first.rank as usize != fans {
            bail!(
                "{} of {fans} crowd fans got their first rank frame",
                first.rank
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
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
        self.stop_workers().await;
    }

    /// Tells every worker to exit and waits for it (at most 30 s each).
    async fn stop_workers(&mut self) {
        for w in &mut self.workers {
            w.stdin.take();
        }
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(30), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.kill().await;
            }
        }
    }

    /// Stops the workers and reads what each recorded of its pre-queued
    /// fans (a crowd started with `records`).
    pub async fn stop_and_collect(mut self) -> anyhow::Result<Vec<crate::worker::FanRecord>> {
        self.stop_workers().await;
        let mut all = Vec::new();
        for (w, worker) in self.workers.iter().enumerate() {
            let path = worker.record.as_ref().context("a crowd that records")?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("worker {w}'s records, {}", path.display()))?;
            for line in text.lines() {
                all.push(
                    crate::worker::FanRecord::parse(line)
                        .with_context(|| format!("a record of worker {w}: {line:?}"))?,
                );
            }
            let _ = std::fs::remove_file(path);
        }
        Ok(all)
    }
}
