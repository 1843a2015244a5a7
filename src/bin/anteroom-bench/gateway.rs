//! The gateway under test: a separate `anteroom` process, started on the
//! embedded backends or on Redis + MySQL + Kafka, so that its RSS and CPU
//! are its own and the harness reaches it only through its public API.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

/// Which backends the gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In-process queue store, database and event bus.
    Embedded,
    /// Redis, MySQL/MariaDB and Kafka (an rdkafka MockCluster owned by the
    /// harness, or the brokers of `--kafka-brokers`).
    Production,
}

/// Where the production backends are.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendUrls {
    /// Redis for the production backends.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// A MySQL server URL, without a database, whose user may create and
    /// drop `anteroom_bench_*` databases.
    #[arg(long, default_value = "mysql://anteroom:anteroom@127.0.0.1:3306")]
    pub mysql_url: String,
    /// Kafka brokers (host:port,...) for the production backends, instead
    /// of the harness's MockCluster. The gateway creates the run's topics
    /// (`bench<run>.*`, 3 partitions) through the broker's admin API; they
    /// are left on the broker.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
}

#[derive(Debug)]
pub struct Gateway {
    pub base: String,
    pub admin_key: String,
    pub log: PathBuf,
    child: Child,
    /// What this gateway alone owns on the production backends (none when
    /// it is one of a [`Cluster`]'s).
    owned: Option<Owned>,
}

/// Settings the scenarios vary.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub rank_interval_ms: u64,
    /// `push.frame_budget`; `None` leaves the gateway's default (and lets
    /// the harness drive a build that predates the setting).
    pub frame_budget: Option<u64>,
    pub db_max_connections: u32,
    /// `kafka.fetch_wait_max_ms`; `None` leaves the gateway's default.
    pub fetch_wait_max_ms: Option<u32>,
}

impl Gateway {
    /// One gateway with backends of its own (its own database and Kafka on
    /// the production set), dropped again by [`Gateway::stop`].
    pub async fn start(
        bin: &std::path::Path,
        backend: Backend,
        urls: &BackendUrls,
        tuning: &Tuning,
        work_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let shared = Shared::create(backend, urls, tuning, work_dir).await?;
        let gateway = Self::spawn(bin, &shared, 0).await;
        match gateway {
            Ok(mut gateway) => {
                gateway.owned = shared.owned;
                Ok(gateway)
            }
            Err(e) => {
                shared.clean_up().await;
                Err(e)
            }
        }
    }

    /// Starts gateway process number `n` on the `shared` backends and
    /// settings, on a port of its own.
    async fn spawn(bin: &std::path::Path, shared: &Shared, n: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let run = &shared.run;
        let log = shared.work_dir.join(format!("gateway-{run}-{n}.log"));
        let config = shared.work_dir.join(format!("gateway-{run}-{n}.toml"));
        let toml = format!("listen = \"127.0.0.1:{port}\"\n{}", shared.toml);
        std::fs::write(&config, toml).context("write the gateway's config")?;
        let out = std::fs::File::create(&log).context("create the gateway log")?;
        let child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ANTEROOM_CONFIG", &config)
            .env("ANTEROOM_ADMIN_KEY", &shared.admin_key)
            .env("ANTEROOM_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut gateway = Self {
            base: format!("http://127.0.0.1:{port}"),
            admin_key: shared.admin_key.clone(),
            log,
            child,
            owned: None,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the gateway exited ({status}); see {}", self.log.display());
            }
            let ready = http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the gateway was not ready in 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the gateway has exited")
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib_of(self.pid()?)
    }

    /// User + system CPU time consumed so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time_of(self.pid()?)
    }

    /// Stops the gateway with SIGTERM (its graceful drain), drops its
    /// database and removes its Redis keys.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_process().await;
        match self.owned.take() {
            Some(owned) => owned.remove().await,
            None => Ok(()),
        }
    }

    async fn stop_process(&mut self) {
        if let Ok(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        }
        let _ = self.child.kill().await;
    }
}

/// What every gateway of one run shares: the settings, and on the
/// production set one Redis prefix, one database and one Kafka cluster.
#[derive(Debug)]
struct Shared {
    run: String,
    admin_key: String,
    work_dir: PathBuf,
    /// The config file after its `listen` line.
    toml: String,
    owned: Option<Owned>,
}

/// What a run creates on the production backends and removes when it
/// ends: its database and the keys under its Redis prefix.
#[derive(Debug)]
struct Owned {
    mysql_server: String,
    database: String,
    redis_url: String,
    redis_prefix: String,
}

impl Owned {
    /// Drops the database and removes the Redis keys; both are tried, and
    /// the first failure is returned.
    async fn remove(self) -> anyhow::Result<()> {
        let dropped = drop_database(&self.mysql_server, &self.database)
            .await
            .with_context(|| format!("drop the bench database {}", self.database));
        let removed = remove_redis_keys(&self.redis_url, &self.redis_prefix)
            .await
            .with_context(|| format!("remove the Redis keys {}*", self.redis_prefix));
        dropped.and(removed.map(drop))
    }
}

impl Shared {
    async fn create(
        backend: Backend,
        urls: &BackendUrls,
        tuning: &Tuning,
        work_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        // Every simulated fan comes from 127.0.0.x, thousands a second: the
        // rate limits would measure themselves, not the gateway.
        let mut toml = format!(
            "\n[push]\nrank_interval_ms = {}\n\
             \n[limits]\nip_per_second = 1000000\nip_burst = 1000000\n\
             identity_per_second = 1000000\nidentity_burst = 1000000\n",
            tuning.rank_interval_ms
        );
        if let Some(budget) = tuning.frame_budget {
            toml = toml.replacen("[push]\n", &format!("[push]\nframe_budget = {budget}\n"), 1);
        }
        let mut owned = None;
        if backend == Backend::Production {
            let name = format!("anteroom_bench_{run}");
            create_database(&urls.mysql_url, &name).await?;
            let prefix = format!("bench{run}:");
            let created = Owned {
                mysql_server: urls.mysql_url.clone(),
                database: name.clone(),
                redis_url: urls.redis_url.clone(),
                redis_prefix: prefix.clone(),
            };
            let topics = format!("bench{run}.");
            // An external broker gets its topics from the gateway; the mock
            // has no admin API, so the harness makes them.
            let (brokers, create_topics) = match &urls.kafka_brokers {
                Some(brokers) => (brokers.clone(), true),
                None => match crate::kafka::MockKafka::start(&topics) {
                    Ok(kafka) => (kafka.bootstrap, false),
                    Err(e) => {
                        let _ = created.remove().await;
                        return Err(e);
                    }
                },
            };
            toml.push_str(&format!(
                "\n[redis]\nurl = \"{}\"\nprefix = \"{prefix}\"\n\
                 \n[database]\nurl = \"{}/{name}\"\nmax_connections = {}\n\
                 \n[kafka]\nbrokers = \"{brokers}\"\ntopic_prefix = \"{topics}\"\n\
                 group_id = \"bench{run}\"\ncreate_topics = {create_topics}\n",
                urls.redis_url, urls.mysql_url, tuning.db_max_connections
            ));
            if let Some(wait) = tuning.fetch_wait_max_ms {
                toml.push_str(&format!("fetch_wait_max_ms = {wait}\n"));
            }
            toml.push_str("\n[auth]\nmode = \"demo\"\n");
            owned = Some(created);
        }
        Ok(Self {
            admin_key: format!("bench-{run}"),
            run,
            work_dir: work_dir.to_owned(),
            toml,
            owned,
        })
    }

    /// Removes what the run created (start-up failed, or the run ended).
    async fn clean_up(self) {
        if let Some(owned) = self.owned {
            if let Err(e) = owned.remove().await {
                eprintln!("cleaning up the bench run: {e:#}");
            }
        }
    }
}

/// Several gateway processes on the same backends (one Redis prefix, one
/// database, one Kafka cluster): the nodes of one deployment.
#[derive(Debug)]
pub struct Cluster {
    pub gateways: Vec<Gateway>,
    shared: Shared,
}

impl Cluster {
    /// Starts `nodes` gateways on the production backends.
    pub async fn start(
        bin: &std::path::Path,
        urls: &BackendUrls,
        tuning: &Tuning,
        work_dir: &std::path::Path,
        nodes: usize,
    ) -> anyhow::Result<Self> {
        let shared = Shared::create(Backend::Production, urls, tuning, work_dir).await?;
        let mut cluster = Self {
            gateways: Vec::with_capacity(nodes),
            shared,
        };
        for n in 0..nodes.max(1) {
            match Gateway::spawn(bin, &cluster.shared, n).await {
                Ok(gateway) => cluster.gateways.push(gateway),
                Err(e) => {
                    cluster.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(cluster)
    }

    /// The sum of the gateways' resident set sizes, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.gateways.iter().map(Gateway::rss_kib).sum()
    }

    /// The sum of the gateways' CPU time.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        self.gateways.iter().map(Gateway::cpu_time).sum()
    }

    /// The store's own record of when the show's latest admissions were
    /// made (ms since the epoch, by the clock of the node that admitted,
    /// oldest first): the rate's window in Redis (`…:admits`, the newest
    /// `admission_rate_per_minute` of them). Independent of when the
    /// gateways answer a scrape or the fans read their frames.
    pub async fn admission_times(&self, show: u64) -> anyhow::Result<Vec<i64>> {
        let owned = self
            .shared
            .owned
            .as_ref()
            .context("the store's record needs the production backends")?;
        let client = redis::Client::open(owned.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let key = format!("{}{{show:{show}}}:admits", owned.redis_prefix);
        let mut times: Vec<i64> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("read {key}"))?;
        times.reverse();
        Ok(times)
    }

    /// Stops every gateway, then drops the shared database and removes
    /// the run's Redis keys.
    pub async fn stop(mut self) {
        for gateway in &mut self.gateways {
            gateway.stop_process().await;
        }
        self.shared.clean_up().await;
    }
}

/// The gateway binary: `given`, or `anteroom` beside the harness.
pub fn binary(given: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(bin) => Ok(bin.to_owned()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("the harness's directory")?
            .join("anteroom")),
    }
}

/// A process's resident set size in KiB, from /proc/PID/status.
pub fn rss_kib_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")
}

/// Clock ticks of user + system time of a process, from /proc/PID/stat.
pub fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn create_database(server: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::MySqlConnection::connect(server)
        .await
        .with_context(|| format!("connect to MySQL at {server}"))?;
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .context("create the bench database")?;
    Ok(())
}

/// Deletes every key under `prefix` (SCAN, then UNLINK in batches): the
/// run's queues, seat locks, caches and node leases. Returns how many.
async fn remove_redis_keys(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
            removed += n;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::MySqlConnection::connect(server).await?;
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")),
    )
    .await?;
    Ok(())
}
