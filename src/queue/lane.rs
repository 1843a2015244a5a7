//! The admission lane: the admission rate's timers and the shows'
//! transitions (the start opens the pre-queue and admits), the promotions
//! they run, the Redis connection every admission call uses, and the
//! queue's change feed, on a thread of their own.
//!
//! A node pushing first ranks to tens of thousands of connections has its
//! workers' run queues full of connection tasks. A rate-paced promotion
//! waited behind them at every step (its timer's wake-up, the Redis
//! connection's driver sending the call and reading the answer, the
//! caller's wake-up), hundreds of milliseconds a step at 100,000 fans, and
//! the admissions of a second fell short of the rate while the opening's
//! first ranks went out. The change feed waited the same way: other nodes'
//! admissions reached this node's fans late, its subscription's PING went
//! unanswered (the feed resubscribed, and every view resynchronised from a
//! snapshot of the whole line at the worst moment), and a node's own
//! script replies overtook the feed by seconds (read as gaps, more
//! snapshots). The start's own transition waited too: the opening's
//! reply reached its task after the first ranks it had just set off, and
//! the rate's next timer with it, so the second after the start fell short
//! (7 admissions of 100 in one run at 100,000 fans). On the lane they wait
//! only for each other.
//!
//! The lane is a single-threaded tokio runtime on an OS thread of its own:
//! the kernel schedules it beside the main workers, and a thread that
//! sleeps most of the time runs soon after its timer or socket wakes it.
//! What it runs is small next to the fan-out (timers, script calls, applying
//! changes to the live view, which wakes the connections they concern); the
//! fans' frames still go out on the main workers.

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// A handle to the lane's runtime; the lane runs until the shutdown it was
/// started with, or until the runtime that started it is gone.
#[derive(Debug, Clone)]
pub struct Lane {
    handle: Handle,
}

impl Lane {
    /// Starts the lane's thread. Called on the gateway's main runtime: when
    /// that runtime is dropped without a shutdown (a test's), the lane ends
    /// with it, and so do the connections its tasks hold.
    pub fn start(shutdown: CancellationToken) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (alive, main_gone) = tokio::sync::oneshot::channel::<()>();
        // Never completes: dropped (and `alive` with it) only with the
        // main runtime.
        tokio::spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        std::thread::Builder::new()
            .name("admission-lane".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        _ = main_gone => {}
                    }
                });
            })?;
        Ok(Self { handle })
    }

    /// The lane's runtime, to spawn on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
