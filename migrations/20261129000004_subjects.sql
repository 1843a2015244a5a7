-- Fans of the jwt auth mode: the ticketing site's `sub`, once per fan.
-- Demo sign-in users keep their username; a jwt fan has a subject and no
-- username. Binary collation: subjects compare exactly.
ALTER TABLE users
    MODIFY username VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD COLUMN subject VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD UNIQUE KEY users_subject (subject);
