-- Counting a show's seats by status (sold out? every seat held?) reads this
-- index alone instead of every seat row: the seats_show_label key finds the
-- show's rows but not their status.
CREATE INDEX seats_show_status ON seats (show_id, status);
