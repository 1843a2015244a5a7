-- Proof of work on join (issue 12): the ALTCHA maxnumber each join of the
-- show must carry a solution for; 0 asks for none.
ALTER TABLE shows
    ADD COLUMN challenge_cost INT UNSIGNED NOT NULL DEFAULT 0,
    ADD CONSTRAINT shows_challenge_cost CHECK (challenge_cost <= 10000000);
