-- An operator's notice to a show's fans (PATCH /v1/admin/shows/{id}):
-- up to 500 characters, checked by the domain; NULL: none.
ALTER TABLE shows ADD COLUMN notice VARCHAR(500) CHARACTER SET utf8mb4 NULL;
