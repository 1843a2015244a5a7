//! `anteroom-bench pow`: what checking a join's proof of work costs the
//! gateway, measured in this process with the gateway's own code
//! (`anteroom::challenge`): decoding and verifying a solution (one SHA-256,
//! one HMAC), then redeeming it (verify + the used-solution record) on the
//! in-process record and, with `--redis-url`, on Redis. For scale, it also
//! times what a script pays per join: `challenge::solve`, a plain Rust
//! solver on one core, at `--solve-cost`.

use std::time::{Duration, Instant};

use anteroom::challenge::{self, Altcha, Challenges, Solution, UsedSolutions};
use anteroom::config::Secret;
use anteroom::domain::{ChallengeCost, Show, ShowId, ShowState, Timestamp};
use anteroom::resilience::{Backend, Breaker, BreakerSettings};
use anteroom::store::redis::RedisConnection;

use crate::stats::Samples;

#[derive(Debug, clap::Args)]
pub struct PowArgs {
    /// Verifications timed (each redeem uses a solution of its own).
    #[arg(long, default_value_t = 100_000)]
    verifies: usize,
    /// Redeems timed on each record.
    #[arg(long, default_value_t = 20_000)]
    redeems: usize,
    /// The cost at which the native solver is timed.
    #[arg(long, default_value_t = 250_000)]
    solve_cost: u64,
    /// Challenges the native solver solves.
    #[arg(long, default_value_t = 20)]
    solves: usize,
    /// Also redeem on Redis (keys under a fresh `bench-pow-<id>:` prefix,
    /// each lapsing by itself within minutes).
    #[arg(long)]
    redis_url: Option<String>,
}

const TTL: Duration = Duration::from_secs(300);

pub async fn run(args: PowArgs) -> anyhow::Result<()> {
    let secret = Secret::generate();
    let altcha = Altcha::new(&secret);
    // The cost changes how long a client searches, not what a check costs:
    // a small one keeps preparing thousands of solutions quick.
    let show = Show {
        id: ShowId(7),
        title: "bench".into(),
        starts_at: None,
        prequeue_opens_at: None,
        admission_rate: None,
        state: ShowState::Open,
        capacity: 1,
        session_ttl: Duration::from_secs(60),
        abandon_grace: Duration::from_secs(60),
        challenge_cost: ChallengeCost::new(50).expect("a cost"),
        notice: None,
    };
    let solve = || {
        let c = altcha.challenge(show.id, show.challenge_cost, Timestamp::now().plus(TTL));
        challenge::solve(&c).expect("solvable").encode()
    };

    let header = solve();
    let started = Instant::now();
    for _ in 0..args.verifies {
        let solution = Solution::decode(std::hint::black_box(&header))?;
        altcha.verify(&solution, show.id, Timestamp::now())?;
    }
    let per = started.elapsed() / u32::try_from(args.verifies.max(1))?;
    println!(
        "decode + verify (SHA-256 + HMAC-SHA256), one core: {:.2} µs each ({} runs)",
        micros(per),
        args.verifies
    );

    let cost = ChallengeCost::new(args.solve_cost)
        .ok_or_else(|| anyhow::anyhow!("--solve-cost is at most {}", ChallengeCost::MAX))?;
    let mut solves = Samples::default();
    for _ in 0..args.solves {
        let c = altcha.challenge(show.id, cost, Timestamp::now().plus(TTL));
        let started = Instant::now();
        challenge::solve(&c).expect("solvable");
        solves.push(started.elapsed());
    }
    if let Some(s) = solves.summary() {
        println!(
            "native solve (challenge::solve, one core) at cost {}: median {:.0} ms, p95 {:.0} ms ({} solves)",
            args.solve_cost, s.p50_ms, s.p95_ms, args.solves
        );
    }

    let memory = Challenges::new(&secret, TTL, UsedSolutions::memory());
    redeem("in-process record", &memory, &show, &solve, args.redeems).await?;
    if let Some(url) = &args.redis_url {
        let target = anteroom::store::RedisTarget::parse(url).map_err(anyhow::Error::msg)?;
        // The gateway's connection, with its default deadline.
        let breaker = Breaker::new(Backend::Redis, &BreakerSettings::default(), None);
        let conn = RedisConnection::connect(target, breaker).await?;
        let prefix = format!(
            "bench-pow-{}:",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let shared = Challenges::new(&secret, TTL, UsedSolutions::redis(conn, &prefix));
        redeem("Redis record", &shared, &show, &solve, args.redeems).await?;
    }
    Ok(())
}

/// Redeems `n` fresh solutions one after another, timing each.
async fn redeem(
    what: &str,
    challenges: &Challenges,
    show: &Show,
    solve: &impl Fn() -> String,
    n: usize,
) -> anyhow::Result<()> {
    let headers: Vec<String> = (0..n).map(|_| solve()).collect();
    let mut samples = Samples::default();
    let started = Instant::now();
    for header in &headers {
        let one = Instant::now();
        challenges
            .redeem(show, Some(header), Timestamp::now())
            .await?;
        samples.push(one.elapsed());
    }
    let per = started.elapsed() / u32::try_from(n.max(1))?;
    let s = samples.summary().expect("samples");
    println!(
        "redeem on the {what}: mean {:.2} µs, p50 {:.0} µs, p99 {:.0} µs ({n} solutions)",
        micros(per),
        s.p50_ms * 1000.0,
        s.p99_ms * 1000.0
    );
    // A second use of each is refused: the record works.
    if let Some(header) = headers.first() {
        anyhow::ensure!(
            challenges
                .redeem(show, Some(header), Timestamp::now())
                .await
                .is_err(),
            "a solution was accepted twice on the {what}"
        );
    }
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
