//! Seats, holds and payments: the validated values of the sale paths.

use serde::{Deserialize, Serialize};

use super::{ReservationId, SeatId, SessionId, ShowId, Timestamp, UserId};

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

/// Why a reservation cannot be paid now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayRefusal {
    AlreadyPaid,
    /// Released, expired, or past `expires_at` though not yet expired.
    HoldExpired,
    NotEnoughPoints {
        balance: u64,
        price: u64,
    },
}

impl Reservation {
    /// The payment rule, which every backend checks inside its transaction:
    /// the hold is still open and within its time, and `balance` covers the
    /// price. Returns the balance after the debit.
    pub fn debit(&self, balance: u64, now: Timestamp) -> Result<u64, PayRefusal> {
        match self.state {
            HoldState::Held if self.expires_at > now => {}
            HoldState::Paid => return Err(PayRefusal::AlreadyPaid),
            _ => return Err(PayRefusal::HoldExpired),
        }
        balance
            .checked_sub(self.price)
            .ok_or(PayRefusal::NotEnoughPoints {
                balance,
                price: self.price,
            })
    }

    /// Whether the hold is open and its time is up.
    pub fn due(&self, now: Timestamp) -> bool {
        self.state == HoldState::Held && self.expires_at <= now
    }
}

/// One section of a show's seat layout: `rows` × `seats_per_row` seats at
/// one price.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// 1 to 32 characters.
    pub name: String,
    pub rows: u32,
    pub seats_per_row: u32,
    /// In points, 1 to 1,000,000.
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_payment_and_expiry_rules() {
        let r = Reservation {
            id: ReservationId(1),
            show: ShowId(1),
            seat: SeatId(1),
            user: UserId(1),
            session: SessionId(1),
            price: 30,
            state: HoldState::Held,
            expires_at: Timestamp(1_000),
        };
        assert_eq!(r.debit(100, Timestamp(999)), Ok(70));
        assert_eq!(r.debit(30, Timestamp(999)), Ok(0));
        assert_eq!(
            r.debit(29, Timestamp(999)),
            Err(PayRefusal::NotEnoughPoints {
                balance: 29,
                price: 30
            })
        );
        assert_eq!(r.debit(100, Timestamp(1_000)), Err(PayRefusal::HoldExpired));
        assert!(!r.due(Timestamp(999)) && r.due(Timestamp(1_000)));
        let paid = Reservation {
            state: HoldState::Paid,
            ..r.clone()
        };
        assert_eq!(paid.debit(100, Timestamp(0)), Err(PayRefusal::AlreadyPaid));
        assert!(!paid.due(Timestamp(5_000)));
        let released = Reservation {
            state: HoldState::Released,
            ..r
        };
        assert_eq!(
            released.debit(100, Timestamp(0)),
            Err(PayRefusal::HoldExpired)
        );
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
