//! Seats, holds and payments: the validated values of the sale paths.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

use super::{schema, PaymentId, ReservationId, SeatId, SessionId, ShowId, Timestamp, UserId};

/// Whether a seat can be bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

impl SeatStatus {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SeatStatus::Available => "available",
            SeatStatus::Held => "held",
            SeatStatus::Sold => "sold",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "available" => SeatStatus::Available,
            "held" => SeatStatus::Held,
            "sold" => SeatStatus::Sold,
            _ => return None,
        })
    }

    /// The seat's two bits in an availability bitmap (`docs/protocol.md`):
    /// 0 available, 1 held, 2 sold.
    pub fn code(self) -> u8 {
        match self {
            SeatStatus::Available => 0,
            SeatStatus::Held => 1,
            SeatStatus::Sold => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => SeatStatus::Available,
            1 => SeatStatus::Held,
            2 => SeatStatus::Sold,
            _ => return None,
        })
    }
}

/// One seat's new status, as a `seats` delta carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SeatChange {
    #[schema(value_type = u64)]
    pub seat_id: SeatId,
    pub status: SeatStatus,
}

/// A seat as the seat map shows it. `version` is the fencing token: every
/// change of status increments it, and a hold is written only if the
/// version is still the one read under the seat's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub id: SeatId,
    pub show: ShowId,
    pub label: String,
    pub section: String,
    pub price: u64,
    pub status: SeatStatus,
    pub version: u64,
}

/// Where a reservation stands. Only `Held` and `Paid` keep the seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Held,
    Paid,
    Released,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Paid => "paid",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => HoldState::Held,
            "paid" => HoldState::Paid,
            "released" => HoldState::Released,
            "expired" => HoldState::Expired,
            _ => return None,
        })
    }
}

/// A fan's hold on a seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub show: ShowId,
    pub seat: SeatId,
    pub user: UserId,
    /// The admitted session the hold was made in.
    pub session: SessionId,
    pub price: u64,
    pub state: HoldState,
    pub expires_at: Timestamp,
}

/// A hold to write. The seat is claimed by one conditional write (only if
/// it is available), not read first: nothing stale can be written, so
/// there is no version to carry from a read.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub show: ShowId,
    pub seat: SeatId,
    pub user: UserId,
    pub session: SessionId,
    pub expires_at: Timestamp,
    /// How many holds the fan may have open in this show, this one included.
    pub max_holds: u32,
}

/// Why a seat cannot be held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldRefusal {
    /// Held or sold by someone else.
    SeatTaken,
    /// Not a seat of this show.
    NoSuchSeat,
    LimitReached,
}

impl HoldRequest {
    /// The hold rule: the fan is under the hold limit and the seat, as the
    /// claim found it (`None`: no such seat in the show), is available.
    /// Returns the seat as held (one version on) and the reservation to
    /// insert (its id is the backend's to give).
    ///
    /// A backend may write the hold first, with this rule as the write's
    /// condition on the rows it locked, and ask afterwards which outcome it
    /// was: MySQL does, so a hold is one round trip (see `store::db::mysql`).
    pub fn decide(
        &self,
        open_holds: u64,
        found: Option<&Seat>,
    ) -> Result<(Seat, Reservation), HoldRefusal> {
        if open_holds >= u64::from(self.max_holds) {
            return Err(HoldRefusal::LimitReached);
        }
        let found = found
            .filter(|s| s.show == self.show && s.id == self.seat)
            .ok_or(HoldRefusal::NoSuchSeat)?;
        let seat = found
            .change(SeatStatus::Available, SeatStatus::Held)
            .ok_or(HoldRefusal::SeatTaken)?;
        let reservation = Reservation {
            id: ReservationId(0),
            show: self.show,
            seat: seat.id,
            user: self.user,
            session: self.session,
            price: seat.price,
            state: HoldState::Held,
            expires_at: self.expires_at,
        };
        Ok((seat, reservation))
    }
}

impl Seat {
    /// The seat moved from `from` to `to`, one version on; `None` if it is
    /// not `from`. Every status change goes through here, so the version
    /// (the fencing token) moves with each one, and a backend stores a
    /// changed seat only where it is still at `version - 1`.
    fn change(&self, from: SeatStatus, to: SeatStatus) -> Option<Seat> {
        (self.status == from).then(|| Seat {
            status: to,
            version: self.version + 1,
            ..self.clone()
        })
    }
}

/// A reservation that ended and the seat it gave back (`None` when the seat
/// was not held by it any more: nothing to give back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldEnd {
    pub reservation: Reservation,
    pub seat: Option<Seat>,
}

impl Reservation {
    /// The fan gives the hold back; refused unless it is still held.
    pub fn release(&self, seat: Option<&Seat>) -> Result<HoldEnd, HoldState> {
        match self.state {
            HoldState::Held => Ok(self.end(HoldState::Released, seat)),
            other => Err(other),
        }
    }

    /// The hold ran out: `None` unless it is still held and due.
    pub fn expire(&self, seat: Option<&Seat>, now: Timestamp) -> Option<HoldEnd> {
        self.due(now).then(|| self.end(HoldState::Expired, seat))
    }

    /// The turn it was made in ended unpaid: a hold never outlives its
    /// session, so it expires now, whatever time it had left. `None`
    /// unless it is still held.
    pub fn expire_with_session(&self, seat: Option<&Seat>) -> Option<HoldEnd> {
        (self.state == HoldState::Held).then(|| self.end(HoldState::Expired, seat))
    }

    fn end(&self, state: HoldState, seat: Option<&Seat>) -> HoldEnd {
        HoldEnd {
            reservation: Reservation {
                state,
                ..self.clone()
            },
            seat: seat
                .filter(|s| s.id == self.seat)
                .and_then(|s| s.change(SeatStatus::Held, SeatStatus::Available)),
        }
    }

    /// Whether the hold is open and its time is up.
    pub fn due(&self, now: Timestamp) -> bool {
        self.state == HoldState::Held && self.expires_at <= now
    }
}

impl HoldState {
    /// Whether a reservation in this state keeps its seat from anyone else.
    pub fn keeps_seat(self) -> bool {
        matches!(self, HoldState::Held | HoldState::Paid)
    }
}

/// How many of a show's seats are available, held and sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeatCounts {
    pub available: u64,
    pub held: u64,
    pub sold: u64,
}

impl SeatCounts {
    /// Adds up `(status, how many)` pairs; a status may come more than once.
    pub fn tally(counts: impl IntoIterator<Item = (SeatStatus, u64)>) -> Self {
        counts
            .into_iter()
            .fold(Self::default(), |mut total, (status, n)| {
                match status {
                    SeatStatus::Available => total.available += n,
                    SeatStatus::Held => total.held += n,
                    SeatStatus::Sold => total.sold += n,
                }
                total
            })
    }

    pub fn left(&self) -> SeatsLeft {
        SeatsLeft {
            available: self.available > 0,
            held: self.held > 0,
            sold: self.sold > 0,
        }
    }

    pub fn sold_out(&self) -> bool {
        self.left().sold_out()
    }

    pub fn all_held(&self) -> bool {
        self.left().all_held()
    }
}

/// Which statuses a show's seats have: all the sold-out and all-held
/// decisions need, and what the database answers by three index probes
/// where a count would read every seat of the show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeatsLeft {
    pub available: bool,
    pub held: bool,
    pub sold: bool,
}

impl SeatsLeft {
    /// Which of the three statuses `statuses` has, read no further than
    /// needed to see all three.
    pub fn of(statuses: impl IntoIterator<Item = SeatStatus>) -> Self {
        let mut left = Self::default();
        for status in statuses {
            match status {
                SeatStatus::Available => left.available = true,
                SeatStatus::Held => left.held = true,
                SeatStatus::Sold => left.sold = true,
            }
            if left.available && left.held && left.sold {
                break;
            }
        }
        left
    }

    /// The show has seats and none left to sell: every one is sold. (A
    /// held seat may still come back, so a show with holds is not sold
    /// out.)
    pub fn sold_out(&self) -> bool {
        self.sold && !self.available && !self.held
    }

    /// Nothing is available now, but some seats are held and may come
    /// back.
    pub fn all_held(&self) -> bool {
        !self.available && self.held
    }
}

/// A fan's points. Credits are bounded; debits happen only in
/// [`Payment::decide`], where the balance covers the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    pub balance: u64,
}

/// A credit that would take the balance past [`Account::MAX_BALANCE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the balance may not exceed {max} points", max = Account::MAX_BALANCE)]
pub struct BalanceLimit;

impl Account {
    /// The highest balance an account may reach.
    pub const MAX_BALANCE: u64 = 1_000_000_000_000;

    pub fn credit(self, amount: Amount) -> Result<Account, BalanceLimit> {
        self.balance
            .checked_add(amount.get())
            .filter(|b| *b <= Self::MAX_BALANCE)
            .map(|balance| Account { balance })
            .ok_or(BalanceLimit)
    }
}

/// What a completed payment answers, the first time and on every replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub payment: PaymentId,
    pub reservation: ReservationId,
    pub amount: u64,
    pub balance: u64,
}

/// How an idempotency key was used before, if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    Unused,
    /// For the same request body: its first answer.
    Same(Receipt),
    /// For another request body.
    Other,
}

impl KeyUse {
    /// The idempotency rule: a stored payment under the key answers again
    /// only for the same request body.
    pub fn of(stored: Option<(&[u8], Receipt)>, request_hash: &[u8; 32]) -> Self {
        match stored {
            None => KeyUse::Unused,
            Some((hash, receipt)) if hash == request_hash => KeyUse::Same(receipt),
            Some(_) => KeyUse::Other,
        }
    }
}

/// A payment request, as the sale service hands it to the database.
#[derive(Debug, Clone)]
pub struct Payment {
    pub user: UserId,
    pub reservation: ReservationId,
    /// The caller's admitted session, if its access token verified and the
    /// queue still has it active: `(show, session)`.
    pub active: Option<(ShowId, SessionId)>,
    pub key: IdempotencyKey,
    /// SHA-256 of the request body.
    pub request_hash: [u8; 32],
    pub now: Timestamp,
}

/// What the database holds about a payment request, read in the payment's
/// transaction (under the fan's account lock).
#[derive(Debug, Clone)]
pub struct PaymentFacts {
    pub key: KeyUse,
    pub reservation: Option<Reservation>,
    /// The reservation's seat.
    pub seat: Option<Seat>,
    pub account: Account,
    /// The fan's holds still open in the reservation's show, this one
    /// included if it is open.
    pub open_holds: u64,
}

/// Why a payment is refused. Every refusal changes nothing, so the request
/// can be retried with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayRefusal {
    /// The key was used before with another body.
    KeyReused,
    /// Not this fan's, or no such reservation.
    NoSuchHold,
    /// Paid already (under another key).
    AlreadyPaid,
    /// Released, expired, or past `expires_at` though not yet expired.
    HoldExpired,
    /// The caller has no active session in the reservation's show.
    NotActive,
    NotEnoughPoints {
        balance: u64,
        price: u64,
    },
}

/// What a payment changes, for the backend to store in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentChange {
    /// Paid.
    pub reservation: Reservation,
    /// Sold.
    pub seat: Seat,
    pub account: Account,
    pub session: SessionId,
    /// Whether the payment ends the fan's session: it does unless they
    /// still hold other seats in the show, which they may pay for too.
    pub ends_session: bool,
}

/// The answer to a payment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentDecision {
    /// The key's first answer, again.
    Replay(Receipt),
    Refuse(PayRefusal),
    Pay(PaymentChange),
}

impl Payment {
    /// The payment rule, in the order its answers take precedence: a used
    /// key answers as it did; then the reservation must be the fan's and
    /// still held; then the session must be active in its show; then the
    /// hold must be within its time and the balance must cover the price.
    pub fn decide(&self, facts: &PaymentFacts) -> PaymentDecision {
        match &facts.key {
            KeyUse::Unused => {}
            KeyUse::Same(receipt) => return PaymentDecision::Replay(receipt.clone()),
            KeyUse::Other => return PaymentDecision::Refuse(PayRefusal::KeyReused),
        }
        match self.change(facts) {
            Ok(change) => PaymentDecision::Pay(change),
            Err(refusal) => PaymentDecision::Refuse(refusal),
        }
    }

    fn change(&self, facts: &PaymentFacts) -> Result<PaymentChange, PayRefusal> {
        let r = facts
            .reservation
            .as_ref()
            .filter(|r| r.user == self.user && r.id == self.reservation)
            .ok_or(PayRefusal::NoSuchHold)?;
        match r.state {
            HoldState::Held => {}
            HoldState::Paid => return Err(PayRefusal::AlreadyPaid),
            HoldState::Released | HoldState::Expired => return Err(PayRefusal::HoldExpired),
        }
        let session = match self.active {
            Some((show, session)) if show == r.show => session,
            _ => return Err(PayRefusal::NotActive),
        };
        if r.expires_at <= self.now {
            return Err(PayRefusal::HoldExpired);
        }
        let balance =
            facts
                .account
                .balance
                .checked_sub(r.price)
                .ok_or(PayRefusal::NotEnoughPoints {
                    balance: facts.account.balance,
                    price: r.price,
                })?;
        // A held reservation's seat is held; anything else means a
        // concurrent change got there first.
        let seat = facts
            .seat
            .as_ref()
            .filter(|s| s.id == r.seat)
            .and_then(|s| s.change(SeatStatus::Held, SeatStatus::Sold))
            .ok_or(PayRefusal::AlreadyPaid)?;
        Ok(PaymentChange {
            reservation: Reservation {
                state: HoldState::Paid,
                ..r.clone()
            },
            seat,
            account: Account { balance },
            session,
            ends_session: facts.open_holds <= 1,
        })
    }
}

impl PaymentChange {
    /// The receipt once the backend has given the payment its id.
    pub fn receipt(&self, payment: PaymentId) -> Receipt {
        Receipt {
            payment,
            reservation: self.reservation.id,
            amount: self.reservation.price,
            balance: self.account.balance,
        }
    }
}

/// One section of a show's seat layout: `rows` × `seats_per_row` seats at
/// one price.
///
/// Each field's bounds are in the schema; what it cannot say, that names
/// are unique and that the layout has at most 50,000 seats in all,
/// [`SeatLayout::parse`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// 1 to 32 characters (trimmed), unique in the layout.
    #[schema(schema_with = SeatLayout::section_name_schema)]
    pub name: String,
    #[schema(schema_with = SeatLayout::rows_schema)]
    pub rows: u32,
    #[schema(schema_with = SeatLayout::rows_schema)]
    pub seats_per_row: u32,
    /// In points.
    #[schema(schema_with = SeatLayout::price_schema)]
    pub price: u64,
}

/// A validated seat layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatLayout {
    sections: Vec<Section>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeatLayoutError {
    #[error("a seat layout needs 1 to {max} sections")]
    Sections { max: usize },
    #[error("section names must be 1 to {max} characters and unique")]
    SectionName { max: usize },
    #[error("each section needs at least one row and one seat per row")]
    Empty,
    #[error("a show may have at most {max} seats")]
    TooManySeats { max: u64 },
    #[error("prices must be between 1 and {max} points")]
    Price { max: u64 },
}

/// A seat to create: `(section, label, price)`.
pub type NewSeat = (String, String, u64);

impl SeatLayout {
    pub const MAX_SECTIONS: usize = 50;
    pub const MAX_SECTION_NAME: usize = 32;
    pub const MAX_SEATS: u64 = 50_000;
    pub const MAX_PRICE: u64 = 1_000_000;

    pub fn parse(sections: Vec<Section>) -> Result<Self, SeatLayoutError> {
        if sections.is_empty() || sections.len() > Self::MAX_SECTIONS {
            return Err(SeatLayoutError::Sections {
                max: Self::MAX_SECTIONS,
            });
        }
        let mut names = std::collections::HashSet::new();
        let mut total = 0u64;
        for s in &sections {
            let name = s.name.trim();
            if name.is_empty()
                || name.chars().count() > Self::MAX_SECTION_NAME
                || !names.insert(name.to_owned())
            {
                return Err(SeatLayoutError::SectionName {
                    max: Self::MAX_SECTION_NAME,
                });
            }
            if s.rows == 0 || s.seats_per_row == 0 {
                return Err(SeatLayoutError::Empty);
            }
            if !(1..=Self::MAX_PRICE).contains(&s.price) {
                return Err(SeatLayoutError::Price {
                    max: Self::MAX_PRICE,
                });
            }
            total += u64::from(s.rows) * u64::from(s.seats_per_row);
            if total > Self::MAX_SEATS {
                return Err(SeatLayoutError::TooManySeats {
                    max: Self::MAX_SEATS,
                });
            }
        }
        Ok(Self {
            sections: sections
                .into_iter()
                .map(|s| Section {
                    name: s.name.trim().to_owned(),
                    ..s
                })
                .collect(),
        })
    }

    /// The sections [`SeatLayout::parse`] takes, as JSON Schema: a list of
    /// 1 to 50 [`Section`]s, or `null` for a show with no seats.
    pub fn schema() -> RefOr<Schema> {
        schema::list_of(
            &<Section as utoipa::ToSchema>::name(),
            1,
            Self::MAX_SECTIONS,
            true,
        )
    }

    pub fn section_name_schema() -> Object {
        schema::trimmed_text(Self::MAX_SECTION_NAME)
    }

    /// Rows, or seats in a row: at least one, and no more than a layout may
    /// have seats (the other factor is at least one).
    pub fn rows_schema() -> Object {
        schema::integer(1, Self::MAX_SEATS)
    }

    pub fn price_schema() -> Object {
        schema::integer(1, Self::MAX_PRICE)
    }

    /// One section of `rows` × `per_row` seats (demo shows, tests).
    pub fn single(
        name: &str,
        rows: u32,
        per_row: u32,
        price: u64,
    ) -> Result<Self, SeatLayoutError> {
        Self::parse(vec![Section {
            name: name.to_owned(),
            rows,
            seats_per_row: per_row,
            price,
        }])
    }

    /// The row of a seat labelled by [`Self::seats`] (`R<row>`); `None` for
    /// a label of another shape.
    pub fn row_of<'a>(section: &str, label: &'a str) -> Option<&'a str> {
        let rest = label.strip_prefix(section)?.strip_prefix(' ')?;
        let (row, _) = rest.rsplit_once('-')?;
        row.starts_with('R').then_some(row)
    }

    /// Every seat, labelled `<section> R<row>-<seat>`, in layout order.
    pub fn seats(&self) -> Vec<NewSeat> {
        let mut out = Vec::new();
        for s in &self.sections {
            for row in 1..=s.rows {
                for seat in 1..=s.seats_per_row {
                    out.push((s.name.clone(), format!("{} R{row}-{seat}", s.name), s.price));
                }
            }
        }
        out
    }
}

/// A positive number of points, bounded per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("amount must be a whole number of points from 1 to {max}")]
pub struct AmountError {
    pub max: u64,
}

impl Amount {
    pub const MAX_CHARGE: u64 = 1_000_000;

    pub fn charge(raw: i64) -> Result<Self, AmountError> {
        u64::try_from(raw)
            .ok()
            .filter(|a| (1..=Self::MAX_CHARGE).contains(a))
            .map(Self)
            .ok_or(AmountError {
                max: Self::MAX_CHARGE,
            })
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// What [`Amount::charge`] accepts, as JSON Schema.
    pub fn schema() -> Object {
        schema::integer(1, Self::MAX_CHARGE)
    }
}

/// A client's `Idempotency-Key`: 1 to 64 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Idempotency-Key must be 1 to {max} visible ASCII characters")]
pub struct IdempotencyKeyError {
    pub max: usize,
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, IdempotencyKeyError> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdempotencyKeyError { max: Self::MAX_LEN })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What [`IdempotencyKey::parse`] accepts: `!` to `~`.
    fn pattern() -> String {
        format!("^[!-~]{{1,{}}}$", Self::MAX_LEN)
    }
}

impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::pattern()))
            .description(Some(
                "One per payment attempt: a retry with the same key answers the first answer.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for IdempotencyKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schema::tests::{in_range, pattern_of, probes};

    #[test]
    fn the_schemas_accept_exactly_what_parse_does() {
        let numbers = [
            0, 1, 2, 49_999, 50_000, 50_001, 999_999, 1_000_000, 1_000_001,
        ];
        for n in numbers.into_iter().chain([u64::from(u32::MAX), u64::MAX]) {
            let small = u32::try_from(n).unwrap_or(u32::MAX);
            let parses = |s: Section| SeatLayout::parse(vec![s]).is_ok();
            // Alone in a layout, a section's rows and seats per row meet
            // no bound but their own.
            let rows = parses(section("A", small, 1, 10)) && u64::from(small) == n;
            assert_eq!(in_range(&SeatLayout::rows_schema(), n), rows, "rows {n}");
            let per_row = parses(section("A", 1, small, 10)) && u64::from(small) == n;
            assert_eq!(
                in_range(&SeatLayout::rows_schema(), n),
                per_row,
                "per row {n}"
            );
            let price = parses(section("A", 1, 1, n));
            assert_eq!(in_range(&SeatLayout::price_schema(), n), price, "price {n}");
            let amount = i64::try_from(n).is_ok_and(|n| Amount::charge(n).is_ok());
            assert_eq!(in_range(&Amount::schema(), n), amount, "amount {n}");
        }
        assert!(Amount::charge(-1).is_err());
        let name = pattern_of(&SeatLayout::section_name_schema());
        for s in probes(SeatLayout::MAX_SECTION_NAME) {
            let parses = SeatLayout::parse(vec![section(&s, 1, 1, 10)]).is_ok();
            assert_eq!(name.is_match(&s), parses, "{s:?}");
        }
        let key = regex::Regex::new(&IdempotencyKey::pattern()).expect("compiles");
        let mut keys: Vec<String> = (0..=255u8).map(|b| format!("k{}", b as char)).collect();
        keys.extend([
            "".into(),
            "k".repeat(64),
            "k".repeat(65),
            "a b".into(),
            "é".into(),
        ]);
        for k in keys {
            assert_eq!(key.is_match(&k), IdempotencyKey::parse(&k).is_ok(), "{k:?}");
        }
    }

    fn section(name: &str, rows: u32, per_row: u32, price: u64) -> Section {
        Section {
            name: name.into(),
            rows,
            seats_per_row: per_row,
            price,
        }
    }

    #[test]
    fn layouts_are_bounded_and_labelled() {
        let layout = SeatLayout::parse(vec![
            section("Floor", 2, 3, 50),
            section("Balcony", 1, 2, 30),
        ])
        .expect("valid");
        let seats = layout.seats();
        assert_eq!(seats.len(), 8);
        assert_eq!(seats[0], ("Floor".into(), "Floor R1-1".into(), 50));
        assert_eq!(seats[7], ("Balcony".into(), "Balcony R1-2".into(), 30));
        assert!(matches!(
            SeatLayout::parse(vec![]),
            Err(SeatLayoutError::Sections { .. })
        ));
        assert!(matches!(
            SeatLayout::parse(vec![section("A", 1, 1, 1), section("A", 1, 1, 1)]),
            Err(SeatLayoutError::SectionName { .. })
        ));
        assert_eq!(
            SeatLayout::parse(vec![section("A", 0, 1, 1)]),
            Err(SeatLayoutError::Empty)
        );
        assert!(matches!(
            SeatLayout::parse(vec![section("A", 1000, 1000, 1)]),
            Err(SeatLayoutError::TooManySeats { .. })
        ));
        assert!(matches!(
            SeatLayout::parse(vec![section("A", 1, 1, 0)]),
            Err(SeatLayoutError::Price { .. })
        ));
    }

    fn seat(status: SeatStatus, version: u64) -> Seat {
        Seat {
            id: SeatId(7),
            show: ShowId(1),
            label: "A R1-1".into(),
            section: "A".into(),
            price: 30,
            status,
            version,
        }
    }

    fn held() -> Reservation {
        Reservation {
            id: ReservationId(1),
            show: ShowId(1),
            seat: SeatId(7),
            user: UserId(1),
            session: SessionId(1),
            price: 30,
            state: HoldState::Held,
            expires_at: Timestamp(1_000),
        }
    }

    fn payment(active: bool, now: i64) -> Payment {
        Payment {
            user: UserId(1),
            reservation: ReservationId(1),
            active: active.then_some((ShowId(1), SessionId(1))),
            key: IdempotencyKey::parse("k").expect("key"),
            request_hash: [1; 32],
            now: Timestamp(now),
        }
    }

    fn facts(r: Reservation, balance: u64, open_holds: u64) -> PaymentFacts {
        PaymentFacts {
            key: KeyUse::Unused,
            seat: Some(seat(SeatStatus::Held, 3)),
            reservation: Some(r),
            account: Account { balance },
            open_holds,
        }
    }

    fn refusal(d: PaymentDecision) -> Option<PayRefusal> {
        match d {
            PaymentDecision::Refuse(r) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn the_payment_rule() {
        let PaymentDecision::Pay(change) = payment(true, 999).decide(&facts(held(), 100, 1)) else {
            panic!("pays");
        };
        assert_eq!(change.account.balance, 70);
        assert_eq!(change.reservation.state, HoldState::Paid);
        assert_eq!(
            (change.seat.status, change.seat.version),
            (SeatStatus::Sold, 4)
        );
        assert!(change.ends_session, "no other hold: the session ends");
        let PaymentDecision::Pay(change) = payment(true, 999).decide(&facts(held(), 30, 2)) else {
            panic!("pays");
        };
        assert_eq!(change.account.balance, 0);
        assert!(!change.ends_session, "another hold open: the session stays");
        assert_eq!(
            refusal(payment(true, 999).decide(&facts(held(), 29, 1))),
            Some(PayRefusal::NotEnoughPoints {
                balance: 29,
                price: 30
            })
        );
        assert_eq!(
            refusal(payment(true, 1_000).decide(&facts(held(), 100, 1))),
            Some(PayRefusal::HoldExpired)
        );
        // The reservation's own state answers before the session does, so
        // a second payment after the first ended the session is 409.
        let paid = Reservation {
            state: HoldState::Paid,
            ..held()
        };
        assert_eq!(
            refusal(payment(false, 0).decide(&facts(paid, 100, 0))),
            Some(PayRefusal::AlreadyPaid)
        );
        let released = Reservation {
            state: HoldState::Released,
            ..held()
        };
        assert_eq!(
            refusal(payment(false, 0).decide(&facts(released, 100, 0))),
            Some(PayRefusal::HoldExpired)
        );
        assert_eq!(
            refusal(payment(false, 0).decide(&facts(held(), 100, 1))),
            Some(PayRefusal::NotActive)
        );
        let others = Reservation {
            user: UserId(2),
            ..held()
        };
        assert_eq!(
            refusal(payment(true, 0).decide(&facts(others, 100, 1))),
            Some(PayRefusal::NoSuchHold)
        );
        // A used key answers before anything else.
        let receipt = change.receipt(PaymentId(9));
        let mut replay = facts(held(), 0, 0);
        replay.key = KeyUse::Same(receipt.clone());
        assert_eq!(
            payment(false, 5_000).decide(&replay),
            PaymentDecision::Replay(receipt)
        );
        replay.key = KeyUse::Other;
        assert_eq!(
            refusal(payment(true, 0).decide(&replay)),
            Some(PayRefusal::KeyReused)
        );
    }

    #[test]
    fn the_hold_release_and_expiry_rules() {
        let request = HoldRequest {
            show: ShowId(1),
            seat: SeatId(7),
            user: UserId(1),
            session: SessionId(1),
            expires_at: Timestamp(1_000),
            max_holds: 2,
        };
        let free = seat(SeatStatus::Available, 2);
        let (held_seat, r) = request.decide(1, Some(&free)).expect("holds");
        assert_eq!((held_seat.status, held_seat.version), (SeatStatus::Held, 3));
        assert_eq!((r.price, r.state), (30, HoldState::Held));
        assert_eq!(
            request.decide(2, Some(&free)),
            Err(HoldRefusal::LimitReached)
        );
        let sold = seat(SeatStatus::Sold, 2);
        assert_eq!(request.decide(0, Some(&sold)), Err(HoldRefusal::SeatTaken));
        assert_eq!(request.decide(0, None), Err(HoldRefusal::NoSuchSeat));
        let elsewhere = Seat {
            show: ShowId(2),
            ..free.clone()
        };
        assert_eq!(
            request.decide(0, Some(&elsewhere)),
            Err(HoldRefusal::NoSuchSeat)
        );

        let r = held();
        let end = r.release(Some(&held_seat)).expect("released");
        assert_eq!(end.reservation.state, HoldState::Released);
        assert_eq!(
            end.seat.map(|s| (s.status, s.version)),
            Some((SeatStatus::Available, 4))
        );
        // A seat that is not held any more is left as it is.
        let sold = seat(SeatStatus::Sold, 9);
        assert_eq!(r.release(Some(&sold)).expect("released").seat, None);
        assert_eq!(end.reservation.release(None), Err(HoldState::Released));

        assert!(r.expire(Some(&held_seat), Timestamp(999)).is_none());
        let expired = r.expire(Some(&held_seat), Timestamp(1_000)).expect("due");
        assert_eq!(expired.reservation.state, HoldState::Expired);
        assert!(expired.reservation.expire(None, Timestamp(5_000)).is_none());
        assert!(HoldState::Paid.keeps_seat() && !HoldState::Expired.keeps_seat());

        // The session's end expires a hold that still has time left, once.
        let cut = r.expire_with_session(Some(&held_seat)).expect("held: ends");
        assert_eq!(cut.reservation.state, HoldState::Expired);
        assert_eq!(
            cut.seat.map(|s| (s.status, s.version)),
            Some((SeatStatus::Available, 4))
        );
        assert!(cut.reservation.expire_with_session(None).is_none());
        let paid = Reservation {
            state: HoldState::Paid,
            ..r
        };
        assert!(paid.expire_with_session(Some(&held_seat)).is_none());
    }

    #[test]
    fn seat_counts_tell_sold_out_from_all_held() {
        use SeatStatus::{Available, Held, Sold};
        let counts = SeatCounts::tally([(Held, 2), (Sold, 3), (Held, 1)]);
        assert_eq!(
            counts,
            SeatCounts {
                available: 0,
                held: 3,
                sold: 3
            }
        );
        assert!(counts.all_held() && !counts.sold_out());
        let sold_out = SeatCounts::tally([(Sold, 4)]);
        assert!(sold_out.sold_out() && !sold_out.all_held());
        let open = SeatCounts::tally([(Available, 1), (Held, 5), (Sold, 5)]);
        assert!(!open.sold_out() && !open.all_held());
        // A show without seats (queue only) is never sold out.
        let none = SeatCounts::tally([]);
        assert!(!none.sold_out() && !none.all_held());
    }

    #[test]
    fn seats_left_agree_with_the_counts_and_stop_once_all_three_are_seen() {
        use SeatStatus::{Available, Held, Sold};
        for statuses in [
            vec![Held, Sold, Held],
            vec![Sold],
            vec![Available, Held],
            vec![],
        ] {
            let counts = SeatCounts::tally(statuses.iter().map(|s| (*s, 1)));
            assert_eq!(SeatsLeft::of(statuses), counts.left());
        }
        let endless = [Sold, Available, Held]
            .into_iter()
            .chain(std::iter::from_fn(|| -> Option<SeatStatus> {
                panic!("read past the third status")
            }));
        assert_eq!(
            SeatsLeft::of(endless),
            SeatsLeft {
                available: true,
                held: true,
                sold: true
            }
        );
    }

    #[test]
    fn credits_are_bounded() {
        let a = Account { balance: 5 };
        let amount = Amount::charge(10).expect("amount");
        assert_eq!(a.credit(amount), Ok(Account { balance: 15 }));
        let full = Account {
            balance: Account::MAX_BALANCE - 5,
        };
        assert_eq!(full.credit(amount), Err(BalanceLimit));
    }

    #[test]
    fn amounts_and_keys() {
        assert_eq!(Amount::charge(5).map(Amount::get), Ok(5));
        assert!(Amount::charge(0).is_err());
        assert!(Amount::charge(-3).is_err());
        assert!(Amount::charge(1_000_001).is_err());
        assert!(IdempotencyKey::parse("order-42").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(65)).is_err());
    }
}
