//! A bounded event queue from the live view to one connection.
//!
//! It does what a bounded `tokio::sync::mpsc` channel does here — events in
//! order, `Full` past the bound, `None` once the sender is gone — at a
//! fraction of the memory: an mpsc channel allocates a 32-slot block up front
//! (about 1.5 KiB with [`MemberEvent`](super::live::MemberEvent)), and every
//! waiting fan's connection holds one while almost none ever receives an
//! event. This holds nothing until the first event. See docs/benchmarks.md.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// `notify_one` stores a permit when nobody waits, so a send between the
    /// receiver's check and its wait is not lost.
    ready: Notify,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    bound: usize,
    sender_gone: bool,
    receiver_gone: bool,
}

#[derive(Debug)]
pub struct Sender<T>(Arc<Shared<T>>);

#[derive(Debug)]
pub struct Receiver<T>(Arc<Shared<T>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    Full,
    Closed,
}

pub fn mailbox<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bound,
            sender_gone: false,
            receiver_gone: false,
        }),
        ready: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Shared<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Sender<T> {
    pub fn try_send(&self, value: T) -> Result<(), TrySendError> {
        let mut state = self.0.state();
        if state.receiver_gone {
            return Err(TrySendError::Closed);
        }
        if state.queue.len() >= state.bound {
            return Err(TrySendError::Full);
        }
        state.queue.push_back(value);
        drop(state);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.state().sender_gone = true;
        self.0.ready.notify_one();
    }
}

impl<T> Receiver<T> {
    /// The next event; `None` once the sender is gone and every event sent
    /// before has been received. Cancel-safe: an event is only taken when
    /// it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.0.state();
                if let Some(value) = state.queue.pop_front() {
                    return Some(value);
                }
                if state.sender_gone {
                    return None;
                }
            }
            self.0.ready.notified().await;
        }
    }
}

#[cfg(test)]
impl<T> Receiver<T> {
    /// The next event if one is there now.
    pub fn try_recv(&mut self) -> Option<T> {
        self.0.state().queue.pop_front()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.state().receiver_gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_then_closes() {
        let (tx, mut rx) = mailbox(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.try_send(4), Ok(()));
        drop(tx);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_send_and_a_gone_one_refuses() {
        let (tx, mut rx) = mailbox(1);
        let waiter = tokio::spawn(async move {
            let got = rx.recv().await;
            (got, rx)
        });
        tokio::task::yield_now().await;
        assert_eq!(tx.try_send(7), Ok(()));
        let (got, rx) = waiter.await.expect("receiver task");
        assert_eq!(got, Some(7));
        drop(rx);
        assert_eq!(tx.try_send(8), Err(TrySendError::Closed));
    }
}
