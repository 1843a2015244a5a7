-- Users (demo sign-in) and shows (each show is one queue).
-- Runs on MySQL 8 and MariaDB 10.11.

CREATE TABLE users (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    -- Binary collation: names compare exactly, as the embedded backend does.
    username VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY users_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE shows (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title VARCHAR(200) CHARACTER SET utf8mb4 NOT NULL,
    starts_at DATETIME(3) NULL,
    state VARCHAR(8) NOT NULL DEFAULT 'open',
    capacity INT UNSIGNED NOT NULL,
    session_ttl_secs INT UNSIGNED NOT NULL,
    abandon_grace_secs INT UNSIGNED NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    CONSTRAINT shows_state CHECK (state IN ('open', 'paused'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
