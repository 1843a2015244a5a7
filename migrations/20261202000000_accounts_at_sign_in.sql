-- Every fan gets an account row at sign-in (balance 0), so a hold only
-- locks it and never creates it. Fans who signed in before get theirs here.
INSERT IGNORE INTO accounts (user_id, balance) SELECT id, 0 FROM users;
