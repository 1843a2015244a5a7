//! The embedded database: tables behind std locks.
//!
//! Std locks (not tokio's) because no critical section awaits. Each sale
//! step runs under the sales tables' one mutex, which makes it atomic; the
//! rules come from the domain, as for MySQL.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use super::{OutboxRow, PayOutcome, ReleaseOutcome};
use crate::domain::{
    Account, Amount, BalanceLimit, DomainEvent, HoldEnd, HoldRefusal, HoldRequest, HoldState,
    IdempotencyKey, KeyUse, NewSeat, NewShow, Payment, PaymentDecision, PaymentFacts, PaymentId,
    Receipt, Reservation, ReservationId, Seat, SeatCounts, SeatId, SeatStatus, SessionId, Show,
    ShowId, ShowState, Subject, Timestamp, UserId, Username,
};

#[derive(Debug, Default)]
pub struct MemoryDb {
    inner: RwLock<Tables>,
    sales: Mutex<SalesTables>,
}

#[derive(Debug, Default)]
struct Tables {
    users: HashMap<String, UserId>,
    subjects: HashMap<Subject, UserId>,
    next_user: u64,
    shows: Vec<Show>,
}

#[derive(Debug, Default)]
struct SalesTables {
    seats: Vec<Seat>,
    reservations: Vec<Reservation>,
    accounts: HashMap<UserId, Account>,
    payments: HashMap<(UserId, IdempotencyKey), StoredPayment>,
    outbox: Vec<MemoryOutboxRow>,
}

#[derive(Debug)]
struct StoredPayment {
    receipt: Receipt,
    hash: [u8; 32],
}

#[derive(Debug)]
struct MemoryOutboxRow {
    event: DomainEvent,
    created_at: Timestamp,
    claimed_until: Option<Timestamp>,
    sent: bool,
}

/// Row ids are 1-based positions.
fn index(id: u64) -> Option<usize> {
    usize::try_from(id).ok()?.checked_sub(1)
}

impl SalesTables {
    fn seat(&self, id: SeatId) -> Option<&Seat> {
        self.seats.get(index(id.0)?)
    }

    fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(index(id.0)?)
    }

    fn seat_counts(&self, show: ShowId) -> SeatCounts {
        SeatCounts::tally(
            self.seats
                .iter()
                .filter(|s| s.show == show)
                .map(|s| (s.status, 1)),
        )
    }

    fn open_holds(&self, show: ShowId, user: UserId) -> u64 {
        self.reservations
            .iter()
            .filter(|r| r.user == user && r.show == show && r.state == HoldState::Held)
            .count() as u64
    }

    /// Stores a changed seat if it is still at the version the change was
    /// computed from (as MySQL's fenced update does).
    fn store_seat(&mut self, seat: Seat) -> bool {
        match index(seat.id.0).and_then(|i| self.seats.get_mut(i)) {
            Some(s) if s.version + 1 == seat.version => {
                *s = seat;
                true
            }
            _ => false,
        }
    }

    fn store_reservation(&mut self, r: Reservation) {
        if let Some(row) = index(r.id.0).and_then(|i| self.reservations.get_mut(i)) {
            *row = r;
        }
    }

    /// Stores an expired hold and the seat it gave back, and writes
    /// `reservation.expired` to the outbox.
    fn store_expiry(&mut self, end: HoldEnd, now: Timestamp) -> Reservation {
        if let Some(seat) = end.seat {
            self.store_seat(seat);
        }
        self.store_reservation(end.reservation.clone());
        self.write_outbox(
            DomainEvent::reservation_expired(&end.reservation),
            now,
            None,
        );
        end.reservation
    }

    /// Writes an event to the outbox, claimed until `claimed_until` if given
    /// (the writer publishes it itself); returns the row's id.
    fn write_outbox(
        &mut self,
        event: DomainEvent,
        now: Timestamp,
        claimed_until: Option<Timestamp>,
    ) -> u64 {
        self.outbox.push(MemoryOutboxRow {
            event,
            created_at: now,
            claimed_until,
            sent: false,
        });
        self.outbox.len() as u64
    }

    fn account(&self, user: UserId) -> Account {
        self.accounts.get(&user).copied().unwrap_or_default()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryDb {
    fn sales(&self) -> MutexGuard<'_, SalesTables> {
        self.sales.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn upsert_user(&self, name: &Username) -> UserId {
        let mut t = write(&self.inner);
        if let Some(id) = t.users.get(name.as_str()) {
            return *id;
        }
        t.next_user += 1;
        let id = UserId(t.next_user);
        t.users.insert(name.as_str().to_owned(), id);
        id
    }

    pub(super) fn upsert_subject(&self, subject: &Subject) -> UserId {
        let mut t = write(&self.inner);
        if let Some(id) = t.subjects.get(subject) {
            return *id;
        }
        t.next_user += 1;
        let id = UserId(t.next_user);
        t.subjects.insert(subject.clone(), id);
        id
    }

    pub(super) fn find_fan(&self, name: &str, demo: bool) -> Option<UserId> {
        let t = read(&self.inner);
        match demo {
            true => t.users.get(name).copied(),
            false => Subject::parse(name)
                .ok()
                .and_then(|s| t.subjects.get(&s).copied()),
        }
    }

    pub(super) fn create_show(&self, new: NewShow, seats: &[NewSeat]) -> Show {
        let show = {
            let mut t = write(&self.inner);
            let show = new.into_show(ShowId(t.shows.len() as u64 + 1), ShowState::Open);
            t.shows.push(show.clone());
            show
        };
        let mut t = self.sales();
        for (section, label, price) in seats {
            let id = SeatId(t.seats.len() as u64 + 1);
            t.seats.push(Seat {
                id,
                show: show.id,
                label: label.clone(),
                section: section.clone(),
                price: *price,
                status: SeatStatus::Available,
                version: 0,
            });
        }
        show
    }

    pub(super) fn show(&self, id: ShowId) -> Option<Show> {
        read(&self.inner).shows.iter().find(|s| s.id == id).cloned()
    }

    pub(super) fn shows(&self) -> Vec<Show> {
        read(&self.inner).shows.clone()
    }

    pub(super) fn set_show_state(&self, id: ShowId, state: ShowState) -> Option<Show> {
        let mut t = write(&self.inner);
        let show = t.shows.iter_mut().find(|s| s.id == id)?;
        // A sale that is over stays over (a pause racing the last seat).
        if !show.state.is_final() {
            show.state = state;
        }
        Some(show.clone())
    }

    /// Writes an operator's change; the state is [`Self::set_show_state`]'s.
    pub(super) fn update_show(&self, changed: &Show) {
        let mut t = write(&self.inner);
        if let Some(show) = t.shows.iter_mut().find(|s| s.id == changed.id) {
            *show = Show {
                state: show.state,
                ..changed.clone()
            };
        }
    }

    pub(super) fn seats(&self, show: ShowId) -> Vec<Seat> {
        self.sales()
            .seats
            .iter()
            .filter(|s| s.show == show)
            .cloned()
            .collect()
    }

    pub(super) fn seat(&self, show: ShowId, seat: SeatId) -> Option<Seat> {
        self.sales().seat(seat).filter(|s| s.show == show).cloned()
    }

    pub(super) fn hold_seat(&self, req: &HoldRequest) -> Result<Reservation, HoldRefusal> {
        let mut t = self.sales();
        let found = t.seat(req.seat).cloned();
        let (seat, mut reservation) =
            req.decide(t.open_holds(req.show, req.user), found.as_ref())?;
        if !t.store_seat(seat) {
            return Err(HoldRefusal::SeatTaken);
        }
        reservation.id = ReservationId(t.reservations.len() as u64 + 1);
        t.reservations.push(reservation.clone());
        Ok(reservation)
    }

    pub(super) fn reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.sales().reservation(id).cloned()
    }

    pub(super) fn release_hold(&self, user: UserId, id: ReservationId) -> ReleaseOutcome {
        let mut t = self.sales();
        let Some(r) = t.reservation(id).filter(|r| r.user == user) else {
            return ReleaseOutcome::NotFound;
        };
        match r.release(t.seat(r.seat)) {
            Ok(end) => {
                if let Some(seat) = end.seat {
                    t.store_seat(seat);
                }
                t.store_reservation(end.reservation.clone());
                ReleaseOutcome::Released(end.reservation)
            }
            Err(state) => ReleaseOutcome::NotHeld(state),
        }
    }

    pub(super) fn expire_hold(&self, id: ReservationId, now: Timestamp) -> Option<Reservation> {
        let mut t = self.sales();
        let r = t.reservation(id)?;
        let end = r.expire(t.seat(r.seat), now)?;
        Some(t.store_expiry(end, now))
    }

    pub(super) fn release_session_holds(
        &self,
        show: ShowId,
        user: UserId,
        session: SessionId,
        now: Timestamp,
    ) -> Vec<Reservation> {
        let mut t = self.sales();
        let held: Vec<Reservation> = t
            .reservations
            .iter()
            .filter(|r| r.show == show && r.user == user && r.session == session)
            .filter(|r| r.state == HoldState::Held)
            .cloned()
            .collect();
        let mut ended = Vec::with_capacity(held.len());
        for r in held {
            if let Some(end) = r.expire_with_session(t.seat(r.seat)) {
                ended.push(t.store_expiry(end, now));
            }
        }
        ended
    }

    pub(super) fn seat_counts(&self, show: ShowId) -> SeatCounts {
        self.sales().seat_counts(show)
    }

    pub(super) fn open_holds(&self) -> Vec<(ReservationId, Timestamp)> {
        self.sales()
            .reservations
            .iter()
            .filter(|r| r.state == HoldState::Held)
            .map(|r| (r.id, r.expires_at))
            .collect()
    }

    pub(super) fn balance(&self, user: UserId) -> u64 {
        self.sales().account(user).balance
    }

    pub(super) fn charge(&self, user: UserId, amount: Amount) -> Result<u64, BalanceLimit> {
        let mut t = self.sales();
        let account = t.account(user).credit(amount)?;
        t.accounts.insert(user, account);
        Ok(account.balance)
    }

    pub(super) fn pay(&self, req: &Payment) -> PayOutcome {
        let mut t = self.sales();
        let stored = t
            .payments
            .get(&(req.user, req.key.clone()))
            .map(|p| (&p.hash[..], p.receipt.clone()));
        let reservation = t.reservation(req.reservation).cloned();
        let facts = PaymentFacts {
            key: KeyUse::of(stored, &req.request_hash),
            seat: reservation.as_ref().and_then(|r| t.seat(r.seat)).cloned(),
            open_holds: reservation
                .as_ref()
                .map_or(0, |r| t.open_holds(r.show, r.user)),
            reservation,
            account: t.account(req.user),
        };
        let change = match req.decide(&facts) {
            PaymentDecision::Replay(receipt) => return PayOutcome::Replayed(receipt),
            PaymentDecision::Refuse(refusal) => return PayOutcome::Refused(refusal),
            PaymentDecision::Pay(change) => change,
        };
        // Under the one mutex nothing changed since the facts were read, so
        // the fenced store cannot fail.
        t.store_seat(change.seat.clone());
        t.store_reservation(change.reservation.clone());
        t.accounts.insert(req.user, change.account);
        let payment = PaymentId(t.payments.len() as u64 + 1);
        let receipt = change.receipt(payment);
        t.payments.insert(
            (req.user, req.key.clone()),
            StoredPayment {
                receipt: receipt.clone(),
                hash: req.request_hash,
            },
        );
        let event = DomainEvent::payment_completed(&change, payment);
        let claimed_until = req.now.plus(super::OUTBOX_LEASE);
        let id = t.write_outbox(event.clone(), req.now, Some(claimed_until));
        PayOutcome::Completed(receipt, change, Box::new(OutboxRow { id, event }))
    }

    pub(super) fn claim_outbox(
        &self,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Vec<OutboxRow> {
        let mut t = self.sales();
        let mut out = Vec::new();
        for (i, row) in t.outbox.iter_mut().enumerate() {
            if out.len() >= limit as usize {
                break;
            }
            if row.sent || row.claimed_until.is_some_and(|until| until > now) {
                continue;
            }
            row.claimed_until = Some(lease_until);
            out.push(OutboxRow {
                id: i as u64 + 1,
                event: row.event.clone(),
            });
        }
        out
    }

    pub(super) fn settle_outbox(&self, ids: &[u64], sent: bool) {
        let mut t = self.sales();
        for id in ids {
            let Some(row) = index(*id).and_then(|i| t.outbox.get_mut(i)) else {
                continue;
            };
            row.sent |= sent;
            row.claimed_until = None;
        }
    }

    pub(super) fn outbox_backlog(&self) -> (u64, Option<Timestamp>) {
        let t = self.sales();
        let pending = t.outbox.iter().filter(|r| !r.sent);
        let oldest = pending.clone().map(|r| r.created_at).min();
        (pending.count() as u64, oldest)
    }
}
