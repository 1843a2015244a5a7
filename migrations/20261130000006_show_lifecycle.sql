-- The on-sale: a show's pre-queue and admission rate, and the states a sale
-- ends in. `scheduled` and `prequeue` are never stored: they follow from the
-- clock and the show's times.
ALTER TABLE shows
    ADD COLUMN prequeue_opens_at DATETIME(3) NULL AFTER starts_at,
    ADD COLUMN admission_rate_per_min INT UNSIGNED NULL;

ALTER TABLE shows DROP CONSTRAINT shows_state;

ALTER TABLE shows
    MODIFY COLUMN state VARCHAR(10) NOT NULL DEFAULT 'open',
    ADD CONSTRAINT shows_state CHECK (state IN ('open', 'paused', 'sold_out', 'closed'));
