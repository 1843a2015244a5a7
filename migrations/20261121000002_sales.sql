-- Seats, holds, points, payments and the transactional outbox.
-- Runs on MySQL 8 and MariaDB 10.11.

CREATE TABLE seats (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    show_id BIGINT UNSIGNED NOT NULL,
    section VARCHAR(32) CHARACTER SET utf8mb4 NOT NULL,
    label VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
    price BIGINT UNSIGNED NOT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'available',
    -- The fencing token: bumped by every status change; a hold is written
    -- only if it still matches the version read under the seat's lock.
    version BIGINT UNSIGNED NOT NULL DEFAULT 0,
    UNIQUE KEY seats_show_label (show_id, label),
    CONSTRAINT seats_show FOREIGN KEY (show_id) REFERENCES shows (id),
    CONSTRAINT seats_status CHECK (status IN ('available', 'held', 'sold'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE reservations (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    show_id BIGINT UNSIGNED NOT NULL,
    seat_id BIGINT UNSIGNED NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    session_id BIGINT UNSIGNED NOT NULL,
    price BIGINT UNSIGNED NOT NULL,
    state VARCHAR(10) NOT NULL,
    expires_at BIGINT NOT NULL,
    -- The seat while the reservation keeps it (held or paid), NULL after:
    -- the unique key lets one seat have at most one such reservation, so
    -- even a write that slipped past the lock and the fence cannot sell a
    -- seat twice.
    open_seat_id BIGINT UNSIGNED NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY reservations_open_seat (open_seat_id),
    KEY reservations_user (user_id, show_id, state),
    KEY reservations_state (state, expires_at),
    CONSTRAINT reservations_seat FOREIGN KEY (seat_id) REFERENCES seats (id),
    CONSTRAINT reservations_state CHECK (state IN ('held', 'paid', 'released', 'expired'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE accounts (
    user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    -- Unsigned and debited only where balance >= amount: never negative.
    balance BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE payments (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    reservation_id BIGINT UNSIGNED NOT NULL,
    amount BIGINT UNSIGNED NOT NULL,
    idempotency_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash BINARY(32) NOT NULL,
    -- The balance right after this payment, so a replay answers the same.
    balance_after BIGINT UNSIGNED NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY payments_reservation (reservation_id),
    UNIQUE KEY payments_key (user_id, idempotency_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Events written in the same transaction as their cause; the relay
-- publishes them and marks them sent. A relay claims rows for a lease so
-- several nodes do not publish the same rows at once.
CREATE TABLE outbox (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    payload TEXT CHARACTER SET utf8mb4 NOT NULL,
    created_at BIGINT NOT NULL,
    claimed_until BIGINT NULL,
    sent_at BIGINT NULL,
    UNIQUE KEY outbox_event (event_id),
    KEY outbox_pending (sent_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
