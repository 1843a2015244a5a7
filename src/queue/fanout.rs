//! A value every connection of a show follows (its rank epoch, its
//! signal), woken in bounded chunks so that a change that concerns every
//! waiting fan never puts a whole node's connections in the run queue at
//! once.
//!
//! With one `watch` channel per show, a bump woke every subscriber in the
//! same call. The change feed applies changes on the admission lane
//! ([`super::lane`]), a thread outside the main runtime, and tokio sends
//! every wake-up from outside the runtime to its global queue, first in,
//! first out: the opening's bump put ~16,700 connection tasks of a node
//! there, and the admissions paced every 10 ms after it woke their fans'
//! connections behind all of them (`active` frames read 0.3–1.6 s after the
//! store's admission at 100,000 fans; docs/benchmarks.md, session 8).
//!
//! So subscribers are spread over shards of at most [`SHARD_SIZE`], and a
//! change is carried to them by one sweep task on the main runtime that
//! updates the shards in turn, and after every [`CHUNK`] wake-ups yields
//! until the runtime's global queue is empty. A task woken from outside
//! the runtime (an admitted fan's connection, woken by its own member
//! event) then waits behind a few chunks at most, not the node. (Yielding
//! alone was not enough: the sweep came back every 61 tasks, woke the next
//! chunk into its worker's local queue each time, the queue spilled into
//! the global one, and `active` frames still waited up to 850 ms there.)
//! Changes made during a sweep are carried by one more sweep, not one
//! each: shards converge to the latest value, as a `watch` does.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::runtime::Handle;
use tokio::sync::watch;

/// Subscribers a shard takes before a new one is added.
const SHARD_SIZE: usize = 64;

/// Wake-ups a sweep makes before it lets the woken tasks run: about what
/// a worker runs before a yielded task's turn comes back (tokio wakes
/// yielded tasks every 61 tasks it runs), so that the woken tasks, which
/// go to the sweeping worker's local queue of 256, do not pile up there
/// and spill into the global queue (a full local queue moves half its
/// tasks there).
const CHUNK: usize = 64;

/// How many turns a sweep waits for the runtime's global queue to empty
/// before it wakes the next chunk anyway (a runtime whose global queue
/// never empties still gets its changes, a chunk every few hundred tasks).
const PATIENCE: usize = 32;

const IDLE: u8 = 0;
const SWEEPING: u8 = 1;
/// Changed since the running sweep started: it sweeps again.
const DIRTY: u8 = 2;

/// The followed value, its subscribers' shards and the sweep.
#[derive(Debug)]
pub struct Fanout<T> {
    inner: Arc<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    current: RwLock<T>,
    shards: RwLock<Vec<watch::Sender<T>>>,
    sweep: AtomicU8,
    /// Where sweeps run; none (outside a runtime, as in unit tests): the
    /// caller sweeps every shard at once.
    runtime: Option<Handle>,
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Fanout<T> {
    pub fn new(value: T, runtime: Option<Handle>) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: RwLock::new(value),
                shards: RwLock::default(),
                sweep: AtomicU8::new(IDLE),
                runtime,
            }),
        }
    }

    /// The value now (a subscriber may not have been woken for it yet).
    pub fn get(&self) -> T {
        self.with(T::clone)
    }

    /// Reads the value now without cloning it.
    pub fn with<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(
            &self
                .inner
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A receiver that has seen its shard's value: it wakes when a sweep
    /// brings its shard a different one.
    pub fn subscribe(&self) -> watch::Receiver<T> {
        let mut shards = self
            .inner
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(shard) = shards.iter().find(|s| s.receiver_count() < SHARD_SIZE) {
            return shard.subscribe();
        }
        // A new shard starts at the current value: nothing before it is
        // owed to its subscribers (they read their state after this).
        let shard = watch::Sender::new(self.get());
        let rx = shard.subscribe();
        shards.push(shard);
        rx
    }

    /// Changes the value with `modify` (which says whether it changed)
    /// and, if it did, sees that every subscriber is woken.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) {
        let changed = modify(
            &mut self
                .inner
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !changed || self.inner.sweep.swap(DIRTY, Ordering::AcqRel) != IDLE {
            // Unchanged, or the running sweep goes round again.
            return;
        }
        match &self.inner.runtime {
            Some(runtime) => {
                let inner = self.inner.clone();
                let metrics = runtime.metrics();
                runtime.spawn(async move {
                    loop {
                        inner.sweep.store(SWEEPING, Ordering::Release);
                        let mut from = 0;
                        while let Some(next) = inner.sweep_chunk(from) {
                            from = next;
                            // Let the chunk run, and whatever was woken
                            // from outside the runtime meanwhile (an
                            // admitted fan's connection) go first.
                            tokio::task::yield_now().await;
                            for _ in 0..PATIENCE {
                                if metrics.global_queue_depth() == 0 {
                                    break;
                                }
                                tokio::task::yield_now().await;
                            }
                        }
                        if inner.finished() {
                            return;
                        }
                    }
                });
            }
            None => loop {
                self.inner.sweep.store(SWEEPING, Ordering::Release);
                let mut from = 0;
                while let Some(next) = self.inner.sweep_chunk(from) {
                    from = next;
                }
                if self.inner.finished() {
                    return;
                }
            },
        }
    }
}

impl<T: Clone + PartialEq> Inner<T> {
    /// Brings the current value to shards from `from` on until [`CHUNK`]
    /// subscribers have been woken; the shard to go on from, or `None`
    /// when every shard has it.
    fn sweep_chunk(&self, from: usize) -> Option<usize> {
        let mut woken = 0;
        let mut at = from;
        loop {
            let value = self
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let shards = self.shards.read().unwrap_or_else(PoisonError::into_inner);
            let shard = shards.get(at)?;
            at += 1;
            let changed = shard.send_if_modified(|v| {
                let changed = *v != value;
                *v = value;
                changed
            });
            if changed {
                woken += shard.receiver_count();
                if woken >= CHUNK {
                    return Some(at);
                }
            }
        }
    }

    /// Ends a sweep unless the value changed since it started.
    fn finished(&self) -> bool {
        self.sweep
            .compare_exchange(SWEEPING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<T> Fanout<T> {
        fn shard_count(&self) -> usize {
            self.inner
                .shards
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        }
    }

    /// Every subscriber, in every shard, sees the last value, and a sweep
    /// wakes them a chunk at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_shard_converges_to_the_last_value() {
        let fanout = Fanout::new(0u64, Some(Handle::current()));
        let mut receivers: Vec<_> = (0..SHARD_SIZE * 5 + 7)
            .map(|_| fanout.subscribe())
            .collect();
        assert_eq!(fanout.shard_count(), 6);
        for _ in 0..10 {
            fanout.send_if_modified(|v| {
                *v += 1;
                true
            });
        }
        for rx in &mut receivers {
            let seen = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                rx.wait_for(|v| *v == 10),
            )
            .await;
            assert!(matches!(seen, Ok(Ok(_))), "a subscriber never saw 10");
        }
        assert_eq!(fanout.get(), 10);
    }

    /// What the sweep is for: a change made on another thread (the lane)
    /// reaches thousands of subscribers, and a task that thread wakes just
    /// after it (an admitted fan's connection) runs before most of them,
    /// not behind all of them in the runtime's global queue.
    #[test]
    fn a_task_woken_after_a_change_runs_ahead_of_its_fan_out() {
        use std::sync::atomic::AtomicUsize;
        const SUBSCRIBERS: usize = 4096;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let fanout = Fanout::new(0u64, Some(runtime.handle().clone()));
        let ran = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        let (admit, admitted) = tokio::sync::oneshot::channel::<()>();
        let member = {
            let ran = ran.clone();
            runtime.spawn(async move {
                admitted.await.expect("admitted");
                ran.load(Ordering::SeqCst)
            })
        };
        let subscribers: Vec<_> = (0..SUBSCRIBERS)
            .map(|_| {
                let mut rx = fanout.subscribe();
                let (ran, waiting) = (ran.clone(), waiting.clone());
                runtime.spawn(async move {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    rx.changed().await.expect("the fan-out lives");
                    ran.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let lane = std::thread::spawn(move || {
            while waiting.load(Ordering::SeqCst) < SUBSCRIBERS {
                std::thread::yield_now();
            }
            fanout.send_if_modified(|v| {
                *v += 1;
                true
            });
            admit.send(()).expect("the member waits");
            fanout
        });
        let ran_before_member = runtime.block_on(async {
            for s in subscribers {
                s.await.expect("a subscriber");
            }
            member.await.expect("the member")
        });
        lane.join().expect("the lane");
        assert!(
            ran_before_member < SUBSCRIBERS / 2,
            "the woken task ran after {ran_before_member} of {SUBSCRIBERS} subscribers"
        );
    }

    /// Outside a runtime the caller carries the change to every shard; an
    /// unchanged value wakes nobody; a shard freed by dropped receivers
    /// takes new ones before another is added.
    #[test]
    fn without_a_runtime_the_change_is_carried_at_once() {
        let fanout = Fanout::new(0u64, None);
        let mut receivers: Vec<_> = (0..SHARD_SIZE + 1).map(|_| fanout.subscribe()).collect();
        fanout.send_if_modified(|_| false);
        assert!(receivers
            .iter()
            .all(|rx| matches!(rx.has_changed(), Ok(false))));
        fanout.send_if_modified(|v| {
            *v = 3;
            true
        });
        for rx in &mut receivers {
            assert!(matches!(rx.has_changed(), Ok(true)));
            assert_eq!(*rx.borrow_and_update(), 3);
        }
        receivers.truncate(SHARD_SIZE - 1);
        let _late = fanout.subscribe();
        assert_eq!(fanout.shard_count(), 2);
    }
}
